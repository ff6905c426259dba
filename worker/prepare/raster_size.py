"""How large a PDF page rasterises, and the dpi that keeps it under the pixel cap."""

from __future__ import annotations

import math
from dataclasses import dataclass

POINTS_PER_INCH = 72

# Below this a page is no longer worth reading: text at 36 dpi is about 5 px tall.
MIN_DPI = 36


@dataclass(frozen=True)
class RasterPlan:
    dpi: int
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def pixel_size(width_pt: float, height_pt: float, dpi: int) -> tuple[int, int]:
    """The bitmap size pdfium renders a page of this size at ``dpi`` (it rounds each side up)."""
    scale = dpi / POINTS_PER_INCH
    return math.ceil(width_pt * scale), math.ceil(height_pt * scale)


def plan_raster(
    width_pt: float, height_pt: float, *, dpi: int, max_pixels: int, min_dpi: int = MIN_DPI
) -> RasterPlan | None:
    """The requested dpi when the page fits ``max_pixels``, else the highest dpi that fits.

    ``None`` when even ``min_dpi`` does not fit. The page box must have a positive area.
    """
    if not (width_pt > 0 and height_pt > 0 and math.isfinite(width_pt * height_pt)):
        raise ValueError(f"a page box of {width_pt} x {height_pt} pt has no area")
    plan = _plan(width_pt, height_pt, dpi)
    if plan.pixels <= max_pixels:
        return plan
    fitting_dpi = math.floor(POINTS_PER_INCH * math.sqrt(max_pixels / (width_pt * height_pt)))
    # Rounding each side up can push the estimate just over the cap; step down until it fits.
    for candidate in range(min(fitting_dpi, dpi - 1), min_dpi - 1, -1):
        plan = _plan(width_pt, height_pt, candidate)
        if plan.pixels <= max_pixels:
            return plan
    return None


def _plan(width_pt: float, height_pt: float, dpi: int) -> RasterPlan:
    width, height = pixel_size(width_pt, height_pt, dpi)
    return RasterPlan(dpi=dpi, width=width, height=height)
