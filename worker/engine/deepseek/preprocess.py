"""The pixel tensors DeepSeek-OCR reads a page from, identical to the reference pipeline's.

The model was trained on inputs built with PIL and torchvision (``process/image_process.py`` of
deepseek-ai/DeepSeek-OCR); any other resampler or centring rule shifts or blurs the page by a
pixel, so every step here reproduces the reference bit for bit:

- tiny and small squash the page to a square with PIL's bicubic ``Image.resize``;
- base, large and gundam's global view fit the page into a square keeping its aspect ratio and
  centre it on grey (127, 127, 127), rounding sizes and offsets like ``ImageOps.pad`` does (Python
  ``round``, half to even);
- gundam tiles resize the whole page to the tile grid and cut it into 640 px squares, row by row;
- pixels become ``(level / 255 - 0.5) / 0.5`` in float32, channels first, as ``ToTensor`` followed
  by ``Normalize(0.5, 0.5)`` compute them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from scriptorium.modes import (
    DEFAULT_MAX_CROPS,
    DEFAULT_MIN_CROPS,
    MODE_SPECS,
    TILE_SIZE,
    Mode,
    TokenGeometry,
    token_geometry,
)

PAD_LEVEL = 127  # the normalisation mean 0.5 as the reference turns it into a colour: int(0.5 * 255)
RESAMPLE = Image.Resampling.BICUBIC

Pixels = npt.NDArray[np.uint8]


def _normalised_levels() -> npt.NDArray[np.float32]:
    """Every uint8 level mapped to its model input value, by the reference's own float32 ops."""
    levels = torch.arange(256, dtype=torch.uint8).to(torch.float32)
    return levels.div(255).sub(0.5).div(0.5).numpy()


LEVEL_VALUES = _normalised_levels()


@dataclass(frozen=True)
class PreparedImage:
    """One page ready for the vision encoder.

    ``global_view`` is ``[3, S, S]`` with S the mode's base size; ``tiles`` is ``[n, 3, 640, 640]``
    in row-major grid order, with n = 0 when the page is read from the global view alone.
    """

    geometry: TokenGeometry
    global_view: torch.Tensor
    tiles: torch.Tensor


def prepare_image(
    image: Image.Image,
    mode: Mode,
    *,
    min_crops: int = DEFAULT_MIN_CROPS,
    max_crops: int = DEFAULT_MAX_CROPS,
) -> PreparedImage:
    """Build the encoder inputs for ``image`` read in ``mode``."""
    page = image if image.mode == "RGB" else image.convert("RGB")
    geometry = token_geometry(mode, page.width, page.height, min_crops=min_crops, max_crops=max_crops)
    side = MODE_SPECS[mode].base_size
    if MODE_SPECS[mode].resizes_to_square:
        # The reference pads this square to the same square afterwards, which leaves it untouched.
        view: Pixels = np.asarray(page.resize((side, side), RESAMPLE))
    else:
        view = fit_and_pad(page, side)
    return PreparedImage(
        geometry=geometry,
        global_view=to_model_input(view),
        tiles=cut_tiles(page, geometry.grid),
    )


def fitted_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The size of a ``width`` x ``height`` page scaled to fit a ``side`` square.

    The longer edge becomes ``side``; the shorter one keeps the aspect ratio, rounded half to even
    from exactly the float expression PIL evaluates. It is 0 for pages too thin to show at all.
    """
    if width > height:
        return side, round(height / width * side)
    if height > width:
        return round(width / height * side), side
    return side, side


def fit_and_pad(page: Image.Image, side: int) -> Pixels:
    """The page scaled to fit a ``side`` square and centred on grey, as ``(side, side, 3)`` levels."""
    canvas = np.full((side, side, 3), PAD_LEVEL, dtype=np.uint8)
    width, height = fitted_size(page.width, page.height, side)
    if width == 0 or height == 0:
        return canvas
    left = round((side - width) / 2)
    top = round((side - height) / 2)
    canvas[top : top + height, left : left + width] = np.asarray(page.resize((width, height), RESAMPLE))
    return canvas


def cut_tiles(page: Image.Image, grid: tuple[int, int] | None) -> torch.Tensor:
    """The page resized onto a ``(columns, rows)`` grid of 640 px tiles, as ``[n, 3, 640, 640]``."""
    if grid is None:
        return torch.zeros((0, 3, TILE_SIZE, TILE_SIZE), dtype=torch.float32)
    columns, rows = grid
    canvas: Pixels = np.asarray(page.resize((TILE_SIZE * columns, TILE_SIZE * rows), RESAMPLE))
    # (rows*640, columns*640, 3) -> (rows, columns, 3, 640, 640), then flattened row by row.
    by_tile = canvas.reshape(rows, TILE_SIZE, columns, TILE_SIZE, 3).transpose(0, 2, 4, 1, 3)
    values = np.take(LEVEL_VALUES, by_tile)
    return torch.from_numpy(values.reshape(rows * columns, 3, TILE_SIZE, TILE_SIZE))


def to_model_input(pixels: Pixels) -> torch.Tensor:
    """``(H, W, 3)`` uint8 levels as the ``[3, H, W]`` float32 tensor the encoder reads."""
    return torch.from_numpy(np.take(LEVEL_VALUES, pixels.transpose(2, 0, 1)))
