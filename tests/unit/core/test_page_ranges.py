import pytest

from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.page_ranges import parse_page_selection, resolve_page_selection


def test_ranges_and_singles() -> None:
    assert resolve_page_selection("1-3,5", 10) == [1, 2, 3, 5]


def test_open_range_runs_to_the_last_page() -> None:
    assert resolve_page_selection("8-", 10) == [8, 9, 10]


def test_overlaps_are_merged_and_sorted() -> None:
    assert resolve_page_selection("5, 1-2, 2-3", 6) == [1, 2, 3, 5]


def test_empty_selection_means_all_pages() -> None:
    assert resolve_page_selection(None, 3) == [1, 2, 3]
    assert resolve_page_selection("  ", 2) == [1, 2]


@pytest.mark.parametrize("text", ["a", "1-2-3", "0", "3-1", "1,,2", "-4"])
def test_malformed_selections_are_refused(text: str) -> None:
    with pytest.raises(InputRejected) as error:
        parse_page_selection(text)
    assert error.value.reason is ReasonCode.INVALID_PAGES


def test_pages_beyond_the_document_are_refused() -> None:
    with pytest.raises(InputRejected, match="has 4 pages"):
        resolve_page_selection("2-9", 4)
