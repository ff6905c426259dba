"""Deterministic synthetic pages: seeded noise, ink-like speckle lines, solid boxes and a gradient.

Built with numpy only, so the same seed gives the same pixels on any machine; the high-frequency
content makes any difference in resampling, rounding or centring visible in the model input.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def synthetic_page(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = (255 - rng.integers(0, 24, size=(height, width, 3))).astype(np.uint8)
    line_height = max(1, height // 60)
    for top in range(line_height, max(line_height, height - line_height), 3 * line_height):
        band = pixels[top : top + line_height]
        ink = rng.random(band.shape[:2]) < 0.35
        band[ink] = rng.integers(0, 80, size=(int(ink.sum()), 3))
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = min(width, x0 + int(rng.integers(1, max(2, width // 3))))
        y1 = min(height, y0 + int(rng.integers(1, max(2, height // 3))))
        pixels[y0:y1, x0:x1] = rng.integers(0, 256, size=3)
    gradient = np.linspace(0, 255, num=width, dtype=np.float64).astype(np.uint8)
    stripe = slice(height // 2, height // 2 + max(1, height // 20))
    pixels[stripe, :, 1] = gradient
    return Image.fromarray(pixels, "RGB")
