from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.settings import PrepareSettings
from worker.prepare.render import RenderedPage, inspect_document, render_pages
from worker.prepare.sniff import DocumentKind

RED = (255, 0, 0)
WHITE = (255, 255, 255)
EXIF_ORIENTATION = 0x0112
ROTATE_90_CLOCKWISE_TO_VIEW = 6


def _only_page(path: Path, limits: PrepareSettings) -> RenderedPage:
    (page,) = render_pages(path, limits)
    return page


def _pixel(page: RenderedPage, x: int, y: int) -> tuple[int, int, int]:
    red, green, blue = page.image.getpixel((x, y))  # type: ignore[misc]
    return red, green, blue


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` and which carries no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("kind", "pillow_format"),
    [
        (DocumentKind.PNG, "PNG"),
        (DocumentKind.JPEG, "JPEG"),
        (DocumentKind.TIFF, "TIFF"),
        (DocumentKind.WEBP, "WEBP"),
        (DocumentKind.GIF, "GIF"),
        (DocumentKind.BMP, "BMP"),
    ],
)
def test_each_image_format_renders_as_one_rgb_page(
    tmp_path: Path, limits: PrepareSettings, kind: DocumentKind, pillow_format: str
) -> None:
    path = tmp_path / "page.bin"  # the name says nothing; the bytes decide
    Image.new("RGB", (24, 16), RED).save(path, format=pillow_format)

    info = inspect_document(path, limits)
    page = _only_page(path, limits)

    assert (info.kind, info.page_count) == (kind, 1)
    assert (page.page_no, page.image.mode, page.image.size) == (1, "RGB", (24, 16))
    red, green, blue = _pixel(page, 12, 8)
    assert red > 240
    assert max(green, blue) < 20


def test_exif_orientation_is_applied(tmp_path: Path, limits: PrepareSettings) -> None:
    stored = Image.new("RGB", (40, 20), WHITE)
    stored.paste(RED, (0, 0, 10, 10))  # a red corner at the stored top-left
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_90_CLOCKWISE_TO_VIEW
    path = tmp_path / "photo.jpg"
    stored.save(path, format="JPEG", exif=exif, quality=95)

    page = _only_page(path, limits)

    assert page.image.size == (20, 40)
    red, green, _ = _pixel(page, 15, 4)  # the red corner is now at the top-right
    assert red > 200
    assert green < 60
    assert min(_pixel(page, 4, 4)) > 200


def test_every_tiff_frame_is_a_page(tmp_path: Path, limits: PrepareSettings) -> None:
    frames = [Image.new("RGB", (30 + 10 * index, 20), colour) for index, colour in enumerate([RED, WHITE])]
    frames.append(Image.new("L", (15, 15), 0))
    path = tmp_path / "scan.tif"
    frames[0].save(path, format="TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw")

    assert inspect_document(path, limits).page_count == 3
    pages = list(render_pages(path, limits, pages=[3, 1]))

    assert [page.page_no for page in pages] == [1, 3]
    assert pages[0].image.size == (30, 20)
    assert _pixel(pages[0], 0, 0) == RED
    assert pages[1].image.size == (15, 15)
    assert _pixel(pages[1], 0, 0) == (0, 0, 0)
    assert all(page.text_layer is None for page in pages)


def test_bilevel_group4_tiff_comes_out_black_on_white(tmp_path: Path, limits: PrepareSettings) -> None:
    bilevel = Image.new("1", (64, 8), 1)
    bilevel.paste(0, (0, 0, 8, 8))
    path = tmp_path / "fax.tif"
    bilevel.save(path, format="TIFF", compression="group4")

    page = _only_page(path, limits)

    assert page.image.mode == "RGB"
    assert _pixel(page, 0, 0) == (0, 0, 0)
    assert _pixel(page, 63, 7) == WHITE


def test_an_animated_gif_is_one_page(tmp_path: Path, limits: PrepareSettings) -> None:
    frames = [Image.new("P", (8, 8), index) for index in range(3)]
    path = tmp_path / "banner.gif"
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:])

    info = inspect_document(path, limits)

    assert (info.kind, info.page_count) == (DocumentKind.GIF, 1)


def test_transparent_png_is_flattened_on_white(tmp_path: Path, limits: PrepareSettings) -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 255, 255))
    path = tmp_path / "logo.png"
    image.save(path)

    page = _only_page(path, limits)

    assert _pixel(page, 0, 0) == (0, 0, 255)
    assert _pixel(page, 3, 3) == WHITE


def test_sixteen_bit_grey_png_keeps_its_tones(tmp_path: Path, limits: PrepareSettings) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16)).save(path)

    page = _only_page(path, limits)

    assert [_pixel(page, x, 0) for x in range(3)] == [(0, 0, 0), (128, 128, 128), WHITE]


def test_declared_resolution_is_reported_when_plausible(tmp_path: Path, limits: PrepareSettings) -> None:
    scanned, placeholder = tmp_path / "scanned.png", tmp_path / "placeholder.png"
    Image.new("RGB", (4, 4)).save(scanned, dpi=(300, 300))
    Image.new("RGB", (4, 4)).save(placeholder, dpi=(1, 1))

    assert _only_page(scanned, limits).dpi == 300
    assert _only_page(placeholder, limits).dpi == limits.dpi


def test_an_image_over_the_pixel_cap_is_page_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (20, 20)).save(path)

    with pytest.raises(InputRejected) as caught:
        list(render_pages(path, PrepareSettings(max_page_pixels=399)))

    assert caught.value.reason is ReasonCode.PAGE_TOO_LARGE
    assert "20 x 20 pixels" in caught.value.message


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path: Path, limits: PrepareSettings) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputRejected) as caught:
            list(render_pages(path, limits))

    assert caught.value.reason is ReasonCode.PAGE_TOO_LARGE


def test_pillows_bomb_warning_is_an_error_even_under_a_generous_cap(tmp_path: Path) -> None:
    # 100 Mpx: above Pillow's warning threshold, below its error threshold and below this cap.
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(10_000, 10_000))

    with pytest.raises(InputRejected) as caught:
        list(render_pages(path, PrepareSettings(max_page_pixels=200_000_000)))

    assert caught.value.reason is ReasonCode.PAGE_TOO_LARGE


def test_a_truncated_image_is_corrupt(tmp_path: Path, limits: PrepareSettings) -> None:
    whole = tmp_path / "whole.png"
    noise = np.random.default_rng(7).integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(whole)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(whole.read_bytes()[:2000])

    with pytest.raises(InputRejected) as caught:
        list(render_pages(truncated, limits))

    assert caught.value.reason is ReasonCode.CORRUPT
    assert caught.value.message.endswith(".")


def test_image_magic_followed_by_garbage_is_corrupt(tmp_path: Path, limits: PrepareSettings) -> None:
    path = tmp_path / "fake.jpg"
    path.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)

    with pytest.raises(InputRejected) as caught:
        inspect_document(path, limits)

    assert caught.value.reason is ReasonCode.CORRUPT
