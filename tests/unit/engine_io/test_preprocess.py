from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scriptorium.modes import Mode
from worker.engine.deepseek.preprocess import LEVEL_VALUES, PAD_LEVEL, fitted_size, prepare_image

from .conftest import cached_page

PAD_VALUE = float(LEVEL_VALUES[PAD_LEVEL])


def test_levels_map_to_the_normalised_range() -> None:
    assert LEVEL_VALUES.dtype == np.float32
    assert LEVEL_VALUES[0] == -1.0
    assert LEVEL_VALUES[255] == 1.0
    assert np.all(np.diff(LEVEL_VALUES) > 0)
    assert abs(PAD_VALUE + 1 / 255) < 1e-7


@pytest.mark.parametrize(
    ("width", "height", "side", "expected"),
    [
        (1191, 1684, 1024, (724, 1024)),
        (600, 1800, 1024, (341, 1024)),
        (1684, 1191, 1280, (1280, 905)),
        (1000, 1000, 1024, (1024, 1024)),
        (30, 40, 1280, (960, 1280)),
        (1, 3000, 1024, (0, 1024)),
    ],
)
def test_fitted_size_keeps_aspect_ratio(
    width: int, height: int, side: int, expected: tuple[int, int]
) -> None:
    assert fitted_size(width, height, side) == expected


def column_is_padding(view: torch.Tensor, column: int) -> bool:
    return bool(torch.all(view[:, :, column] == PAD_VALUE))


def test_padding_offset_rounds_half_to_even() -> None:
    # 1024 - 341 = 683 columns of padding: 341.5 on the left rounds to 342, not 341.
    view = prepare_image(cached_page(600, 1800, 1), Mode.BASE).global_view
    assert column_is_padding(view, 341)
    assert not column_is_padding(view, 342)
    assert not column_is_padding(view, 682)
    assert column_is_padding(view, 683)


def test_page_too_thin_to_show_is_all_padding() -> None:
    view = prepare_image(cached_page(1, 3000, 2), Mode.LARGE).global_view
    assert torch.all(view == PAD_VALUE)


def test_tiles_are_cut_row_major() -> None:
    colours = np.arange(6 * 3, dtype=np.uint8).reshape(6, 3) * 12 + 20
    pixels = np.zeros((3 * 640, 2 * 640, 3), dtype=np.uint8)
    for index, colour in enumerate(colours):
        row, column = divmod(index, 2)
        pixels[row * 640 : (row + 1) * 640, column * 640 : (column + 1) * 640] = colour
    prepared = prepare_image(Image.fromarray(pixels, "RGB"), Mode.GUNDAM)

    assert prepared.geometry.grid == (2, 3)
    assert prepared.tiles.shape == (6, 3, 640, 640)
    for index, colour in enumerate(colours):
        expected = torch.from_numpy(LEVEL_VALUES[colour]).reshape(3, 1, 1).expand(3, 640, 640)
        assert torch.equal(prepared.tiles[index], expected)


@pytest.mark.parametrize("mode", [Mode.TINY, Mode.SMALL, Mode.BASE, Mode.LARGE])
def test_untiled_modes_have_no_tiles(mode: Mode) -> None:
    prepared = prepare_image(cached_page(1191, 1684, 3), mode)
    assert prepared.tiles.shape == (0, 3, 640, 640)
    assert prepared.tiles.dtype == torch.float32
    assert prepared.geometry.grid is None


def test_small_page_in_gundam_is_read_from_the_global_view_alone() -> None:
    prepared = prepare_image(cached_page(640, 640, 4), Mode.GUNDAM)
    assert prepared.tiles.shape == (0, 3, 640, 640)
    assert prepared.global_view.shape == (3, 1024, 1024)
    assert prepared.geometry.placeholders == 273


@pytest.mark.parametrize("image_mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_other_image_modes_are_read_as_rgb(image_mode: str) -> None:
    page = cached_page(700, 900, 5).convert(image_mode)
    prepared = prepare_image(page, Mode.GUNDAM)
    reference = prepare_image(page.convert("RGB"), Mode.GUNDAM)
    assert torch.equal(prepared.global_view, reference.global_view)
    assert torch.equal(prepared.tiles, reference.tiles)


def test_values_stay_in_the_normalised_range() -> None:
    prepared = prepare_image(cached_page(1920, 1080, 6), Mode.GUNDAM, max_crops=9)
    assert prepared.geometry.grid == (4, 2)
    for tensor in (prepared.global_view, prepared.tiles):
        assert float(tensor.min()) >= -1.0
        assert float(tensor.max()) <= 1.0
