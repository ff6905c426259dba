"""Greys deeper than 8 bits (16-bit, 32-bit integer, floating point) brought to 8-bit RGB by scaling.

Pillow's own conversion clips these to 255 instead, which turns a 16-bit scan white.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

_SIXTEEN_BIT_MAX = 65535
_EIGHT_BIT_MAX = 255


def integer_grey_to_rgb(image: Image.Image, *, sixteen_bit: bool) -> Image.Image:
    """``sixteen_bit``: the samples span 0-65535. Otherwise (mode "I") they may be widened 8-bit greys."""
    wide = np.asarray(image).astype(np.float64)
    if sixteen_bit or (wide.size and float(wide.max()) > _EIGHT_BIT_MAX):
        wide = np.clip(wide, 0, _SIXTEEN_BIT_MAX) / (_SIXTEEN_BIT_MAX / _EIGHT_BIT_MAX)
    return _grey_to_rgb(wide)


def float_grey_to_rgb(image: Image.Image) -> Image.Image:
    finite = np.nan_to_num(np.asarray(image).astype(np.float64), nan=0.0, posinf=_EIGHT_BIT_MAX, neginf=0.0)
    # Floating-point greys are either normalised to [0, 1] or already on the 8-bit scale.
    if finite.size and float(finite.max()) <= 1.0:
        finite = finite * _EIGHT_BIT_MAX
    return _grey_to_rgb(finite)


def _grey_to_rgb(values: npt.NDArray[np.float64]) -> Image.Image:
    grey = np.rint(np.clip(values, 0, _EIGHT_BIT_MAX)).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")
