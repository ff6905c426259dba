import pytest

from scriptorium.modes import MODE_ORDER, Mode, candidate_grids, choose_grid, token_geometry

# Placeholder counts from the reference token table (deepseek-ocr.md §1.2), computed with the official logic.
REFERENCE_TABLE = [
    # width, height, tiny, small, base, large, gundam(6), gundam(9), base valid, large valid, grid(6)
    (1191, 1684, 73, 111, 273, 421, 903, 903, 182, 283, (2, 3)),
    (1224, 1584, 73, 111, 273, 421, 903, 903, 198, 310, (2, 3)),
    (1684, 1191, 73, 111, 273, 421, 893, 893, 182, 283, (3, 2)),
    (1920, 1080, 73, 111, 273, 421, 483, 1093, 144, 225, (2, 1)),
    (600, 1800, 73, 111, 273, 421, 603, 603, 86, 134, (1, 3)),
    (640, 640, 73, 111, 273, 421, 273, 273, 256, 400, None),
]


@pytest.mark.parametrize("row", REFERENCE_TABLE, ids=lambda r: f"{r[0]}x{r[1]}")
def test_placeholders_match_reference_table(row: tuple) -> None:
    width, height, tiny, small, base, large, gundam6, gundam9, base_valid, large_valid, grid = row
    counts = [token_geometry(mode, width, height).placeholders for mode in MODE_ORDER]
    assert counts == [tiny, small, base, large, gundam6]
    assert token_geometry(Mode.GUNDAM, width, height, max_crops=9).placeholders == gundam9
    assert token_geometry(Mode.BASE, width, height).valid == base_valid
    assert token_geometry(Mode.LARGE, width, height).valid == large_valid
    assert token_geometry(Mode.GUNDAM, width, height).grid == grid


def test_vision_features_per_mode() -> None:
    a4 = [token_geometry(mode, 1191, 1684).vision_features for mode in MODE_ORDER]
    assert a4 == [64, 100, 256, 400, 256 + 6 * 100]


def test_squashed_modes_count_every_feature_as_valid() -> None:
    assert token_geometry(Mode.TINY, 600, 1800).valid == 64
    assert token_geometry(Mode.SMALL, 600, 1800).valid == 100


def test_gundam_valid_counts_tiles_fully_and_global_view_without_padding() -> None:
    geometry = token_geometry(Mode.GUNDAM, 1191, 1684)
    assert geometry.valid == 182 + 600
    assert geometry.tiles == 6


@pytest.mark.parametrize(("width", "height"), [(640, 640), (30, 40), (640, 10)])
def test_pages_within_one_tile_are_not_tiled(width: int, height: int) -> None:
    assert choose_grid(width, height) is None
    assert token_geometry(Mode.GUNDAM, width, height).placeholders == 273


def test_one_pixel_over_a_tile_tiles() -> None:
    assert choose_grid(641, 640) == (2, 2)


def test_extreme_aspect_ratios_pick_the_longest_strip() -> None:
    assert choose_grid(100, 5000) == (1, 6)
    assert choose_grid(5000, 100) == (6, 1)
    assert choose_grid(100, 5000, max_crops=9) == (1, 9)


def test_tie_break_prefers_larger_grid_only_for_large_pages() -> None:
    # 16:9 at max 9: 2x1 and 4x2 tie on aspect; the page area decides.
    assert choose_grid(1920, 1080, max_crops=9) == (4, 2)
    assert choose_grid(1280, 720, max_crops=9) == (2, 1)


def test_candidate_grids_are_sorted_by_tile_count() -> None:
    grids = candidate_grids(2, 6)
    assert [c * r for c, r in grids] == sorted(c * r for c, r in grids)
    assert all(2 <= c * r <= 6 for c, r in grids)


def test_invalid_crop_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="min_crops"):
        choose_grid(2000, 2000, min_crops=3, max_crops=2)
    with pytest.raises(ValueError, match="max_crops"):
        choose_grid(2000, 2000, max_crops=10)


def test_mode_ladder() -> None:
    assert Mode.TINY.next_up() is Mode.SMALL
    assert Mode.LARGE.next_up() is Mode.GUNDAM
    assert Mode.GUNDAM.next_up() is None
