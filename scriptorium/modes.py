"""DeepSeek-OCR resolution modes and the exact vision-token geometry of a page in each.

Everything here follows the reference preprocessing (``process/image_process.py`` of
deepseek-ai/DeepSeek-OCR): the grid choice for gundam tiling, the number of ``<image>``
placeholders the prompt carries, and the vision features the encoder produces. Token
accounting and mode routing both depend on these numbers being exact, so this module has no
estimates in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

PATCH_SIZE = 16
DOWNSAMPLE_RATIO = 4
TILE_SIZE = 640
DEFAULT_MIN_CROPS = 2
DEFAULT_MAX_CROPS = 6
MAX_CROPS_LIMIT = 9


class Mode(StrEnum):
    """The five modes the released checkpoint supports, cheapest first."""

    TINY = "tiny"
    SMALL = "small"
    BASE = "base"
    LARGE = "large"
    GUNDAM = "gundam"

    @property
    def rank(self) -> int:
        return MODE_ORDER.index(self)

    def next_up(self) -> Mode | None:
        """The next more expensive mode, or None at the top."""
        index = self.rank + 1
        return MODE_ORDER[index] if index < len(MODE_ORDER) else None


MODE_ORDER: tuple[Mode, ...] = (Mode.TINY, Mode.SMALL, Mode.BASE, Mode.LARGE, Mode.GUNDAM)


@dataclass(frozen=True)
class ModeSpec:
    """Reference settings of a mode: global view size, tile size, and whether it tiles."""

    base_size: int
    image_size: int
    crop_mode: bool

    @property
    def resizes_to_square(self) -> bool:
        """Tiny and small squash the page to a square; the other modes fit and pad."""
        return self.image_size <= TILE_SIZE and not self.crop_mode


MODE_SPECS: dict[Mode, ModeSpec] = {
    Mode.TINY: ModeSpec(base_size=512, image_size=512, crop_mode=False),
    Mode.SMALL: ModeSpec(base_size=640, image_size=640, crop_mode=False),
    Mode.BASE: ModeSpec(base_size=1024, image_size=1024, crop_mode=False),
    Mode.LARGE: ModeSpec(base_size=1280, image_size=1280, crop_mode=False),
    Mode.GUNDAM: ModeSpec(base_size=1024, image_size=TILE_SIZE, crop_mode=True),
}


def queries_per_side(size: int) -> int:
    """Features per row (and column) of one encoded view of ``size`` pixels."""
    return math.ceil((size // PATCH_SIZE) / DOWNSAMPLE_RATIO)


def candidate_grids(min_crops: int, max_crops: int) -> list[tuple[int, int]]:
    """All (columns, rows) grids with ``min_crops <= columns*rows <= max_crops``.

    The reference builds these in a Python ``set`` and sorts by tile count; the order of
    equal-count grids therefore follows set iteration, which decides exact ties in
    :func:`choose_grid`. Building the same set here keeps that order identical.
    """
    grids = {
        (i, j)
        for n in range(min_crops, max_crops + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_crops <= i * j <= max_crops
    }
    return sorted(grids, key=lambda grid: grid[0] * grid[1])


def choose_grid(
    width: int,
    height: int,
    *,
    min_crops: int = DEFAULT_MIN_CROPS,
    max_crops: int = DEFAULT_MAX_CROPS,
) -> tuple[int, int] | None:
    """The gundam tile grid (columns, rows) for a page, or None when the page is not tiled.

    Pages no larger than one tile in both directions are read from the global view alone.
    Otherwise the grid whose aspect ratio is closest to the page wins; on an exact tie a
    later (larger) grid wins when the page has more than half its pixel area.
    """
    if not 1 <= min_crops <= max_crops <= MAX_CROPS_LIMIT:
        raise ValueError(
            f"need 1 <= min_crops <= max_crops <= {MAX_CROPS_LIMIT}, got {min_crops}, {max_crops}"
        )
    if width <= TILE_SIZE and height <= TILE_SIZE:
        return None
    aspect = width / height
    area = width * height
    best = (1, 1)
    best_diff = math.inf
    for cols, rows in candidate_grids(min_crops, max_crops):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best_diff = diff
            best = (cols, rows)
        elif diff == best_diff and area > 0.5 * TILE_SIZE * TILE_SIZE * cols * rows:
            best = (cols, rows)
    if best == (1, 1):
        return None
    return best


@dataclass(frozen=True)
class TokenGeometry:
    """How many vision tokens a page costs in one mode.

    ``vision_features`` are the encoder outputs (the paper's "vision tokens"),
    ``placeholders`` the ``<image>`` ids in the prompt (features plus one learned newline per
    row and the view separator), and ``valid`` the paper's Eq. 1 count that leaves out the
    grey padding of fitted views.
    """

    mode: Mode
    width: int
    height: int
    grid: tuple[int, int] | None
    vision_features: int
    placeholders: int
    valid: int

    @property
    def tiles(self) -> int:
        return 0 if self.grid is None else self.grid[0] * self.grid[1]


def token_geometry(
    mode: Mode,
    width: int,
    height: int,
    *,
    min_crops: int = DEFAULT_MIN_CROPS,
    max_crops: int = DEFAULT_MAX_CROPS,
) -> TokenGeometry:
    """Exact token geometry of a ``width`` x ``height`` page read in ``mode``."""
    if width <= 0 or height <= 0:
        raise ValueError(f"page size must be positive, got {width}x{height}")
    spec = MODE_SPECS[mode]
    side = queries_per_side(spec.base_size)
    global_features = side * side
    placeholders = side * (side + 1) + 1
    fill = min(width, height) / max(width, height)
    global_valid = global_features if spec.resizes_to_square else math.ceil(global_features * fill)

    grid = choose_grid(width, height, min_crops=min_crops, max_crops=max_crops) if spec.crop_mode else None
    tile_features = 0
    if grid is not None:
        cols, rows = grid
        tile_side = queries_per_side(spec.image_size)
        tile_features = tile_side * tile_side * cols * rows
        placeholders += (tile_side * rows) * (tile_side * cols + 1)
    return TokenGeometry(
        mode=mode,
        width=width,
        height=height,
        grid=grid,
        vision_features=global_features + tile_features,
        placeholders=placeholders,
        valid=global_valid + tile_features,
    )
