"""Every file of the robustness corpus either renders correctly or is refused with a reason and a sentence."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.settings import PrepareSettings
from worker.prepare.pdf import PdfSource
from worker.prepare.render import RenderedPage, inspect_document, render_pages
from worker.prepare.sniff import DocumentKind

REFUSED = {
    "malformed/empty.pdf": ReasonCode.EMPTY,
    "malformed/invalid.pdf": ReasonCode.CORRUPT,
    "malformed/unreadablemetadata.pdf": ReasonCode.CORRUPT,
    "odd/small_page_size.tests.jsonl": ReasonCode.UNSUPPORTED_TYPE,
    "encrypted/r2-user-password.pdf": ReasonCode.ENCRYPTED,
    "encrypted/r6-user-password.pdf": ReasonCode.ENCRYPTED,
    "encrypted/2206.01062_pg3.pdf": ReasonCode.ENCRYPTED,
    "encrypted/libreoffice-writer-password.pdf": ReasonCode.ENCRYPTED,
}

# file: (kind, page count, size of page 1 in pixels at the default 144 dpi)
RENDERED = {
    "encrypted/r6-owner-password.pdf": (DocumentKind.PDF, 1, (1191, 1684)),
    "malformed/invalid_pdf.pdf": (DocumentKind.PDF, 2, (1224, 1584)),
    "malformed/zen_of_python_corrupted.pdf": (DocumentKind.PDF, 1, (1684, 1190)),
    "malformed/poppler-90-0-fuzzed.pdf": (DocumentKind.PDF, 16, (1224, 1584)),
    "odd/blank.pdf": (DocumentKind.PDF, 1, (1224, 1584)),
    "odd/vector.pdf": (DocumentKind.PDF, 1, (1191, 1684)),
    "odd/cardinal.pdf": (DocumentKind.PDF, 4, (1224, 1584)),
    "odd/sample_with_rotation_mismatch.pdf": (DocumentKind.PDF, 1, (1190, 1684)),
    "odd/small_page_size.pdf": (DocumentKind.PDF, 1, (360, 600)),
    "odd-images/webp-test.webp": (DocumentKind.WEBP, 1, (2000, 2829)),
    "odd-images/2206.01062.tif": (DocumentKind.TIFF, 2, (612, 792)),
    "odd-images/baiona_cmyk.jpg": (DocumentKind.JPEG, 1, (640, 682)),
    "huge/poster.pdf": (DocumentKind.PDF, 1, (3600, 7200)),
}

HUGEMONO = "huge/hugemono.pdf"
FOUR_HUNDRED_PAGES = "huge/pdf2image-memory-error-test-400p.pdf"
CORPUS_NOTES = {"MANIFEST.md", "passwords.csv"}


def _ink_fraction(page: RenderedPage) -> float:
    return float((np.asarray(page.image) < 128).mean())


def _first_page(
    path: Path, limits: PrepareSettings, password: str | None = None, *, page_no: int = 1
) -> RenderedPage:
    return next(render_pages(path, limits, pages=[page_no], password=password))


def test_every_corpus_file_has_an_expectation(bad_input: Path) -> None:
    present = {
        str(path.relative_to(bad_input))
        for path in bad_input.rglob("*")
        if path.is_file() and path.name not in CORPUS_NOTES
    }
    assert present == set(REFUSED) | set(RENDERED) | {HUGEMONO, FOUR_HUNDRED_PAGES}


@pytest.mark.parametrize(("name", "reason"), sorted(REFUSED.items()))
def test_refused_with_reason_and_sentence(
    bad_input: Path, limits: PrepareSettings, name: str, reason: ReasonCode
) -> None:
    with pytest.raises(InputRejected) as caught:
        inspect_document(bad_input / name, limits)
    assert caught.value.reason is reason
    assert caught.value.message[0].isupper()
    assert caught.value.message.endswith(".")
    assert "Traceback" not in caught.value.message


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_odd_but_valid_files_render(bad_input: Path, limits: PrepareSettings, name: str) -> None:
    kind, page_count, size = RENDERED[name]
    info = inspect_document(bad_input / name, limits)
    page = _first_page(bad_input / name, limits)

    assert (info.kind, info.page_count) == (kind, page_count)
    assert page.page_no == 1
    assert page.image.mode == "RGB"
    assert page.image.size == size
    assert (page.text_layer is None) is kind.is_image


@pytest.mark.parametrize(
    "name",
    [
        "encrypted/r2-user-password.pdf",
        "encrypted/r6-user-password.pdf",
        "encrypted/2206.01062_pg3.pdf",
        "encrypted/libreoffice-writer-password.pdf",
    ],
)
def test_encrypted_pdfs_open_with_their_password_only(
    bad_input: Path, limits: PrepareSettings, user_passwords: dict[str, str], name: str
) -> None:
    page = _first_page(bad_input / name, limits, password=user_passwords[name])
    assert page.text_layer
    assert _ink_fraction(page) > 0.0001  # two short lines of text

    with pytest.raises(InputRejected) as caught:
        inspect_document(bad_input / name, limits, password="not-the-password")
    assert caught.value.reason is ReasonCode.ENCRYPTED
    assert "password" in caught.value.message


def test_missing_password_asks_for_one(bad_input: Path, limits: PrepareSettings) -> None:
    with pytest.raises(InputRejected) as caught:
        inspect_document(bad_input / "encrypted/2206.01062_pg3.pdf", limits)
    assert "send its password" in caught.value.message


def test_owner_password_only_pdf_renders_even_with_an_unrelated_password(
    bad_input: Path, limits: PrepareSettings
) -> None:
    page = _first_page(bad_input / "encrypted/r6-owner-password.pdf", limits, password="for-another-file")
    assert page.text_layer is not None
    assert "pdf encryption test" in page.text_layer


def test_garbage_before_the_header_is_repaired(bad_input: Path, limits: PrepareSettings) -> None:
    pages = list(render_pages(bad_input / "malformed/invalid_pdf.pdf", limits))
    assert [page.page_no for page in pages] == [1, 2]
    assert pages[0].text_layer is not None
    assert "Invoice number" in pages[0].text_layer


def test_rotated_page_renders_in_its_displayed_orientation(bad_input: Path, limits: PrepareSettings) -> None:
    # The media box is portrait 595 x 842 pt; /Rotate 90 shows it in landscape.
    page = _first_page(bad_input / "malformed/zen_of_python_corrupted.pdf", limits)
    assert page.image.width > page.image.height
    assert page.text_layer is not None
    assert page.text_layer.startswith("Beautiful is better than ugly.")


def test_fuzzed_pdf_pages_render_or_are_refused_as_corrupt(bad_input: Path, limits: PrepareSettings) -> None:
    path = bad_input / "malformed/poppler-90-0-fuzzed.pdf"
    rendered: list[int] = []
    refusals: list[ReasonCode] = []
    for page_no in range(1, 17):
        try:
            rendered.append(_first_page(path, limits, page_no=page_no).page_no)
        except InputRejected as rejection:
            refusals.append(rejection.reason)
    assert rendered
    assert set(refusals) <= {ReasonCode.CORRUPT}
    assert len(rendered) + len(refusals) == 16


def test_blank_page_is_white_without_text(bad_input: Path, limits: PrepareSettings) -> None:
    page = _first_page(bad_input / "odd/blank.pdf", limits)
    assert np.asarray(page.image).min() == 255
    assert page.text_layer == ""


def test_text_drawn_as_curves_has_ink_but_no_text_layer(bad_input: Path, limits: PrepareSettings) -> None:
    page = _first_page(bad_input / "odd/vector.pdf", limits)
    assert _ink_fraction(page) > 0.01
    assert page.text_layer == ""


def test_tiny_page_keeps_its_dense_text_layer(bad_input: Path, limits: PrepareSettings) -> None:
    page = _first_page(bad_input / "odd/small_page_size.pdf", limits)
    assert page.dpi == limits.dpi
    assert page.text_layer is not None
    assert len(page.text_layer) > 3000


def test_cmyk_jpeg_is_not_inverted(bad_input: Path, limits: PrepareSettings) -> None:
    page = _first_page(bad_input / "odd-images/baiona_cmyk.jpg", limits)
    pixels = np.asarray(page.image)
    assert np.median(pixels) == 255  # paper stays white
    assert _ink_fraction(page) > 0.001
    assert page.dpi == 200


def test_every_frame_of_the_rgba_tiff_is_an_rgb_page(bad_input: Path, limits: PrepareSettings) -> None:
    pages = list(render_pages(bad_input / "odd-images/2206.01062.tif", limits))
    assert [(page.page_no, page.image.mode, page.image.size) for page in pages] == [
        (1, "RGB", (612, 792)),
        (2, "RGB", (612, 792)),
    ]
    assert all(0.01 < _ink_fraction(page) < 0.5 for page in pages)


def test_huge_page_is_clamped_to_the_pixel_cap(bad_input: Path, limits: PrepareSettings) -> None:
    page = _first_page(bad_input / HUGEMONO, limits)  # 8400 pt square: 16800 px a side at 144 dpi
    assert page.dpi == 54
    assert page.image.size == (6300, 6300)
    assert page.image.width * page.image.height <= limits.max_page_pixels


def test_huge_page_that_cannot_fit_even_at_minimum_dpi_is_refused(bad_input: Path) -> None:
    with pytest.raises(InputRejected) as caught:
        list(render_pages(bad_input / HUGEMONO, PrepareSettings(max_page_pixels=1_000_000)))
    assert caught.value.reason is ReasonCode.PAGE_TOO_LARGE
    assert "1,000,000 pixels" in caught.value.message


def test_poster_is_clamped_under_a_tighter_cap(bad_input: Path) -> None:
    limits = PrepareSettings(max_page_pixels=4_000_000)
    page = _first_page(bad_input / "huge/poster.pdf", limits)
    assert page.dpi == 56
    assert page.image.size == (1400, 2800)


def test_too_many_pages_is_refused_before_rendering(bad_input: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = _count_rendered_pages(monkeypatch)
    with pytest.raises(InputRejected) as caught:
        list(render_pages(bad_input / FOUR_HUNDRED_PAGES, PrepareSettings(max_pages=399)))
    assert caught.value.reason is ReasonCode.TOO_MANY_PAGES
    assert "400 pages" in caught.value.message
    assert rendered == []


def test_a_page_range_of_the_long_document_renders_alone(
    bad_input: Path, limits: PrepareSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = _count_rendered_pages(monkeypatch)
    pages = list(render_pages(bad_input / FOUR_HUNDRED_PAGES, limits, pages=[201, 199, 200]))
    assert [page.page_no for page in pages] == [199, 200, 201]
    assert all(page.image.size == (1224, 1584) for page in pages)
    assert rendered == [199, 200, 201]


def test_the_long_document_renders_lazily(
    bad_input: Path, limits: PrepareSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = _count_rendered_pages(monkeypatch)
    pages = render_pages(bad_input / FOUR_HUNDRED_PAGES, limits)
    first_two = list(itertools.islice(pages, 2))
    pages.close()
    assert [page.page_no for page in first_two] == [1, 2]
    assert rendered == [1, 2]


def _count_rendered_pages(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    rendered: list[int] = []
    real_render_page = PdfSource.render_page

    def counting_render_page(self: PdfSource, page_no: int) -> RenderedPage:
        rendered.append(page_no)
        return real_render_page(self, page_no)

    monkeypatch.setattr(PdfSource, "render_page", counting_render_page)
    return rendered
