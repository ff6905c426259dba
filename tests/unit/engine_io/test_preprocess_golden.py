"""prepare_image against model inputs produced by the official DeepSeek-OCR preprocessing.

golden/preprocess.json was computed by running the reference ``tokenize_with_images`` with real
torchvision on the pages of synthetic.py (see its ``about``); here only our code runs.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
import torch

from scriptorium.modes import Mode
from worker.engine.deepseek.preprocess import prepare_image

from .conftest import cached_page, load_golden

GOLDEN = load_golden("preprocess.json")


def case_id(case: dict[str, Any]) -> str:
    crops = f"-max{case['max_crops']}" if case["mode"] == "gundam" else ""
    return f"{case['mode']}{crops}-{case['width']}x{case['height']}"


def sha256_of(tensor: torch.Tensor) -> str:
    values = tensor.contiguous().numpy()
    assert values.dtype == np.float32
    return hashlib.sha256(values.astype("<f4").tobytes()).hexdigest()


def sampled(tensor: torch.Tensor, samples: list[list[float]]) -> list[list[float]]:
    flat = tensor.reshape(-1)
    return [[index, float(flat[int(index)])] for index, _ in samples]


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=case_id)
def test_prepare_image_matches_reference_bit_for_bit(case: dict[str, Any]) -> None:
    page = cached_page(case["width"], case["height"], case["seed"])
    prepared = prepare_image(
        page, Mode(case["mode"]), min_crops=case["min_crops"], max_crops=case["max_crops"]
    )

    expected_grid = tuple(case["grid"]) if case["grid"] is not None else None
    assert prepared.geometry.grid == expected_grid
    assert prepared.geometry.placeholders == case["placeholders"]
    assert list(prepared.global_view.shape) == case["global_shape"]
    assert list(prepared.tiles.shape) == case["tiles_shape"]
    assert prepared.global_view.dtype == torch.float32
    assert prepared.tiles.dtype == torch.float32
    assert sampled(prepared.global_view, case["global_samples"]) == case["global_samples"]
    assert sampled(prepared.tiles, case["tiles_samples"]) == case["tiles_samples"]
    assert sha256_of(prepared.global_view) == case["global_sha256"]
    assert sha256_of(prepared.tiles) == case["tiles_sha256"]


def test_golden_cases_cover_the_brief() -> None:
    covered = {(c["mode"], c["max_crops"], c["width"], c["height"]) for c in GOLDEN["cases"]}
    for size in [(1191, 1684), (1224, 1584), (1684, 1191), (1920, 1080), (600, 1800), (500, 400)]:
        for mode in Mode:
            assert (mode.value, 6, *size) in covered
        assert ("gundam", 9, *size) in covered
    by_key = {(c["mode"], c["max_crops"], c["width"], c["height"]): c for c in GOLDEN["cases"]}
    assert by_key[("gundam", 6, 1920, 1080)]["grid"] == [2, 1]
    assert by_key[("gundam", 9, 1920, 1080)]["grid"] == [4, 2]
