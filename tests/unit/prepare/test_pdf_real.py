"""Real PDFs as users upload them: page counts, page sizes at 144 dpi, and the born-digital text layer."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest

from scriptorium.settings import PrepareSettings
from worker.prepare.render import inspect_document, render_pages
from worker.prepare.sniff import DocumentKind

# file: (pages, page 1 in pixels at 144 dpi, page-1 text-layer characters per the corpus manifest)
REAL_PDFS = {
    "redp5110_sampled.pdf": (18, (1224, 1584), 335),
    "normal_4pages.pdf": (4, (1224, 1718), 1473),
    "multi_page.pdf": (5, (1191, 1684), 2354),
    "code_and_formula.pdf": (2, (1224, 1584), 2503),
    "right_to_left_01.pdf": (1, (1224, 1584), 1419),
    "multicolumn.pdf": (3, (1191, 1684), 3470),
    "crazyones.pdf": (1, (1224, 1584), 898),
    "nlp2004slides.pdf": (31, (1600, 1200), 81),
    "slideshow_mostly_images.pdf": (68, (1440, 1080), 355),
    "linn.pdf": (1, (1224, 1584), 0),
    "multipage.pdf": (6, (768, 942), 0),
}


def _words(text: str) -> list[str]:
    return unicodedata.normalize("NFKC", text).split()


@pytest.mark.parametrize("name", sorted(REAL_PDFS))
def test_page_count_and_first_page_size(pdf_real: Path, limits: PrepareSettings, name: str) -> None:
    page_count, size, _ = REAL_PDFS[name]
    info = inspect_document(pdf_real / name, limits)
    page = next(render_pages(pdf_real / name, limits, pages=[1]))

    assert (info.kind, info.page_count) == (DocumentKind.PDF, page_count)
    assert (page.image.mode, page.image.size, page.dpi) == ("RGB", size, 144)
    assert float((np.asarray(page.image) < 128).mean()) > 0.001


@pytest.mark.parametrize("name", sorted(REAL_PDFS))
def test_first_page_text_layer_length(pdf_real: Path, limits: PrepareSettings, name: str) -> None:
    _, _, expected_chars = REAL_PDFS[name]
    page = next(render_pages(pdf_real / name, limits, pages=[1]))

    assert page.text_layer is not None
    if expected_chars == 0:
        assert page.text_layer.strip() == ""
    else:
        # Extractors differ slightly in the spaces and line breaks they insert.
        assert abs(len(page.text_layer) - expected_chars) <= 0.05 * expected_chars


def test_born_digital_text_layer_reads_like_the_ground_truth(pdf_real: Path, limits: PrepareSettings) -> None:
    page = next(render_pages(pdf_real / "crazyones.pdf", limits))
    expected = (pdf_real / "crazyones.gt.txt").read_text(encoding="utf-8")

    assert page.text_layer is not None
    assert _words(page.text_layer) == _words(expected)


def test_right_to_left_text_layer_keeps_its_script(pdf_real: Path, limits: PrepareSettings) -> None:
    page = next(render_pages(pdf_real / "right_to_left_01.pdf", limits))
    assert page.text_layer is not None
    arabic = sum(1 for char in page.text_layer if "\u0600" <= char <= "\u06ff")
    assert arabic > 500


def test_every_page_of_a_mixed_size_document_renders(pdf_real: Path, limits: PrepareSettings) -> None:
    pages = list(render_pages(pdf_real / "multipage.pdf", limits))
    assert [page.page_no for page in pages] == [1, 2, 3, 4, 5, 6]
    assert len({page.image.size for page in pages}) > 2
    assert all(page.image.width * page.image.height <= limits.max_page_pixels for page in pages)
