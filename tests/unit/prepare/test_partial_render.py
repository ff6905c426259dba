"""A page that cannot be drawn fails alone, with its reason; the others are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.settings import PrepareSettings
from tests.unit.prepare.broken_pdf import GOOD, HUGE, NOT_A_PAGE, pdf_with_pages
from worker.prepare.document import FailedPage
from worker.prepare.render import RenderedPage, open_document
from worker.prepare.sandbox import render_document_sandboxed


def _write(tmp_path: Path, kinds: list[str]) -> Path:
    path = tmp_path / "damaged.pdf"
    path.write_bytes(pdf_with_pages(kinds))
    return path


def test_each_page_is_rendered_or_failed_with_its_reason(tmp_path: Path, limits: PrepareSettings) -> None:
    path = _write(tmp_path, [GOOD, NOT_A_PAGE, GOOD, HUGE])
    with open_document(path, limits) as document:
        assert document.info.page_count == 4
        outcomes = list(document.render_each())
    assert [type(outcome) for outcome in outcomes] == [RenderedPage, FailedPage, RenderedPage, FailedPage]
    failed = [outcome for outcome in outcomes if isinstance(outcome, FailedPage)]
    assert [(page.page_no, page.reason) for page in failed] == [
        (2, ReasonCode.CORRUPT),
        (4, ReasonCode.PAGE_TOO_LARGE),
    ]
    assert all("Page" in page.message for page in failed)


def test_the_sandbox_reports_failed_pages_next_to_the_rendered_ones(
    tmp_path: Path, limits: PrepareSettings
) -> None:
    path = _write(tmp_path, [GOOD, NOT_A_PAGE, GOOD, HUGE])
    result = render_document_sandboxed(path, tmp_path / "out", limits)
    assert result.info.page_count == 4
    assert [page.page_no for page in result.pages] == [1, 3]
    assert "Page 3" in (result.pages[1].text_layer or "")
    assert [(page.page_no, page.reason) for page in result.failed] == [
        (2, ReasonCode.CORRUPT),
        (4, ReasonCode.PAGE_TOO_LARGE),
    ]


def test_a_selection_of_only_the_good_pages_fails_nothing(tmp_path: Path, limits: PrepareSettings) -> None:
    path = _write(tmp_path, [GOOD, NOT_A_PAGE, GOOD])
    result = render_document_sandboxed(path, tmp_path / "out", limits, page_selection="3")
    assert [page.page_no for page in result.pages] == [3] and result.failed == []


@pytest.mark.parametrize(
    ("kinds", "reason"),
    [([NOT_A_PAGE], ReasonCode.CORRUPT), ([HUGE, NOT_A_PAGE], ReasonCode.PAGE_TOO_LARGE)],
)
def test_a_document_with_no_readable_page_is_refused_with_the_first_reason(
    tmp_path: Path, limits: PrepareSettings, kinds: list[str], reason: ReasonCode
) -> None:
    path = _write(tmp_path, kinds)
    with pytest.raises(InputRejected) as refused:
        render_document_sandboxed(path, tmp_path / "out", limits)
    assert refused.value.reason is reason
