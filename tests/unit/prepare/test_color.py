from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from scriptorium.errors import InputRejected, ReasonCode
from worker.prepare.color import to_rgb


def _pixels(image: Image.Image) -> list[tuple[int, int, int]]:
    converted = to_rgb(image)
    assert converted.mode == "RGB"
    assert converted.size == image.size
    return [tuple(pixel) for pixel in np.asarray(converted).reshape(-1, 3).tolist()]


def test_rgb_passes_through_unchanged() -> None:
    image = Image.new("RGB", (2, 1), (10, 20, 30))
    assert _pixels(image) == [(10, 20, 30), (10, 20, 30)]


def test_rgba_is_composited_on_white() -> None:
    image = Image.new("RGBA", (3, 1))
    image.putdata([(255, 0, 0, 255), (255, 0, 0, 0), (0, 0, 0, 128)])
    opaque, transparent, half_black = _pixels(image)
    assert opaque == (255, 0, 0)
    assert transparent == (255, 255, 255)
    assert all(126 <= channel <= 128 for channel in half_black)


def test_grey_with_alpha_is_composited_on_white() -> None:
    image = Image.new("LA", (2, 1))
    image.putdata([(0, 255), (0, 0)])
    assert _pixels(image) == [(0, 0, 0), (255, 255, 255)]


def test_palette_transparency_becomes_white() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    image.putdata([0, 1])
    image.info["transparency"] = 0
    assert _pixels(image) == [(255, 255, 255), (0, 255, 0)]


def test_palette_without_transparency_keeps_its_colours() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    image.putdata([0, 1])
    assert _pixels(image) == [(0, 0, 255), (0, 255, 0)]


def test_cmyk_reads_as_ink_on_paper() -> None:
    image = Image.new("CMYK", (3, 1))
    image.putdata([(0, 0, 0, 0), (0, 0, 0, 255), (0, 255, 255, 0)])
    assert _pixels(image) == [(255, 255, 255), (0, 0, 0), (255, 0, 0)]


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_grey_is_scaled_not_clipped(mode: str) -> None:
    values = np.array([[0, 257 * 128, 65535]], dtype=">u2" if mode == "I;16B" else "<u2")
    image = Image.frombytes(mode, (3, 1), values.tobytes())
    assert _pixels(image) == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_dark_sixteen_bit_grey_stays_dark() -> None:
    image = Image.frombytes("I;16", (1, 1), np.array([[200]], dtype="<u2").tobytes())
    assert _pixels(image) == [(1, 1, 1)]


def test_32_bit_grey_holding_16_bit_values_is_scaled() -> None:
    image = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))
    assert image.mode == "I"
    assert _pixels(image) == [(0, 0, 0), (255, 255, 255)]


def test_32_bit_grey_holding_8_bit_values_is_kept() -> None:
    image = Image.fromarray(np.array([[0, 200]], dtype=np.int32))
    assert _pixels(image) == [(0, 0, 0), (200, 200, 200)]


def test_normalised_float_grey_is_scaled() -> None:
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert image.mode == "F"
    assert _pixels(image) == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_bilevel_is_black_and_white() -> None:
    image = Image.new("1", (2, 1))
    image.putdata([0, 1])
    assert _pixels(image) == [(0, 0, 0), (255, 255, 255)]


def test_a_mode_pillow_cannot_convert_is_refused_with_a_sentence() -> None:
    with pytest.raises(InputRejected) as caught:
        to_rgb(Image.new("La", (1, 1)))
    assert caught.value.reason is ReasonCode.UNSUPPORTED_TYPE
    assert "La" in caught.value.message
