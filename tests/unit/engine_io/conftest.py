from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from .synthetic import synthetic_page

GOLDEN_DIR = Path(__file__).parent / "golden"


def load_golden(name: str) -> dict[str, Any]:
    with (GOLDEN_DIR / name).open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


@lru_cache(maxsize=4)
def cached_page(width: int, height: int, seed: int) -> Image.Image:
    return synthetic_page(width, height, seed)
