"""Document-level limits and the page selection, checked before any page is rendered."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.settings import PrepareSettings
from worker.prepare.render import inspect_document, render_pages, select_pages


@pytest.fixture
def three_page_tiff(tmp_path: Path) -> Path:
    path = tmp_path / "three.tif"
    frames = [Image.new("L", (10, 10), shade) for shade in (0, 100, 200)]
    frames[0].save(path, format="TIFF", save_all=True, append_images=frames[1:])
    return path


def test_no_selection_means_every_page() -> None:
    assert select_pages(None, 3) == [1, 2, 3]


def test_selection_is_sorted_without_repeats() -> None:
    assert select_pages([3, 1, 3], 3) == [1, 3]


@pytest.mark.parametrize("pages", [[0], [4], [-1, 2], [2, 99]])
def test_pages_outside_the_document_are_invalid(pages: list[int]) -> None:
    with pytest.raises(InputRejected) as caught:
        select_pages(pages, 3)
    assert caught.value.reason is ReasonCode.INVALID_PAGES
    assert "3 pages" in caught.value.message


def test_an_empty_selection_is_invalid() -> None:
    with pytest.raises(InputRejected) as caught:
        select_pages([], 3)
    assert caught.value.reason is ReasonCode.INVALID_PAGES


def test_invalid_selection_is_refused_before_any_page_renders(three_page_tiff: Path) -> None:
    pages = render_pages(three_page_tiff, PrepareSettings(), pages=[2, 4])
    with pytest.raises(InputRejected) as caught:
        next(pages)
    assert caught.value.reason is ReasonCode.INVALID_PAGES
    assert "page 4" in caught.value.message


def test_selected_pages_come_out_in_order(three_page_tiff: Path) -> None:
    pages = list(render_pages(three_page_tiff, PrepareSettings(), pages=[3, 2]))
    assert [(page.page_no, page.image.getpixel((0, 0))) for page in pages] == [
        (2, (100, 100, 100)),
        (3, (200, 200, 200)),
    ]


def test_a_file_over_the_byte_limit_is_too_large(three_page_tiff: Path) -> None:
    size = three_page_tiff.stat().st_size
    with pytest.raises(InputRejected) as caught:
        inspect_document(three_page_tiff, PrepareSettings(max_bytes=size - 1))
    assert caught.value.reason is ReasonCode.TOO_LARGE
    assert inspect_document(three_page_tiff, PrepareSettings(max_bytes=size)).page_count == 3


def test_too_many_frames_is_too_many_pages(three_page_tiff: Path) -> None:
    with pytest.raises(InputRejected) as caught:
        inspect_document(three_page_tiff, PrepareSettings(max_pages=2))
    assert caught.value.reason is ReasonCode.TOO_MANY_PAGES
    assert caught.value.message == "The document has 3 pages; at most 2 are accepted."


def test_a_pdf_with_no_pages_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "no-pages.pdf"
    path.write_bytes(
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
        b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )
    with pytest.raises(InputRejected) as caught:
        inspect_document(path, PrepareSettings())
    assert caught.value.reason is ReasonCode.CORRUPT
