from __future__ import annotations

import math

import pytest

from worker.prepare.raster_size import MIN_DPI, pixel_size, plan_raster

LETTER = (612.0, 792.0)
A4 = (595.2756, 841.8898)


def test_letter_at_144_dpi_is_1224_by_1584() -> None:
    assert pixel_size(*LETTER, 144) == (1224, 1584)


def test_a4_at_144_dpi_rounds_each_side_up() -> None:
    assert pixel_size(*A4, 144) == (1191, 1684)


def test_a_page_under_the_cap_keeps_the_requested_dpi() -> None:
    plan = plan_raster(*LETTER, dpi=144, max_pixels=40_000_000)
    assert plan is not None
    assert (plan.dpi, plan.width, plan.height) == (144, 1224, 1584)


def test_a_page_over_the_cap_gets_the_highest_dpi_that_fits() -> None:
    plan = plan_raster(8400.0, 8400.0, dpi=144, max_pixels=40_000_000)
    assert plan is not None
    assert plan.pixels <= 40_000_000
    one_more = pixel_size(8400.0, 8400.0, plan.dpi + 1)
    assert one_more[0] * one_more[1] > 40_000_000
    assert plan.dpi == 54


@pytest.mark.parametrize(("width_pt", "height_pt"), [(1000.3, 777.7), (13.1, 9999.9), (2160.0, 2160.0)])
def test_clamped_plans_never_exceed_the_cap(width_pt: float, height_pt: float) -> None:
    cap = 2_000_003
    plan = plan_raster(width_pt, height_pt, dpi=300, max_pixels=cap)
    assert plan is not None
    assert plan.pixels <= cap
    assert (plan.width, plan.height) == pixel_size(width_pt, height_pt, plan.dpi)
    assert MIN_DPI <= plan.dpi < 300


def test_a_page_too_large_even_at_the_minimum_dpi_has_no_plan() -> None:
    side_pt = math.sqrt(40_000_000) * 72 / MIN_DPI + 10
    assert plan_raster(side_pt, side_pt, dpi=144, max_pixels=40_000_000) is None


def test_a_tiny_page_is_never_scaled_up_and_has_at_least_one_pixel() -> None:
    plan = plan_raster(0.2, 0.2, dpi=144, max_pixels=40_000_000)
    assert plan is not None
    assert (plan.dpi, plan.width, plan.height) == (144, 1, 1)


@pytest.mark.parametrize(("width_pt", "height_pt"), [(0.0, 792.0), (612.0, -1.0), (math.nan, 10.0)])
def test_a_page_without_area_is_an_error(width_pt: float, height_pt: float) -> None:
    with pytest.raises(ValueError, match="no area"):
        plan_raster(width_pt, height_pt, dpi=144, max_pixels=40_000_000)
