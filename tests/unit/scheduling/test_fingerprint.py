from typing import Any

import pytest

from scriptorium.dedup import canonical_pages, fingerprint
from scriptorium.errors import InputRejected


@pytest.mark.parametrize(
    ("selection", "canonical"),
    [
        (None, ""),
        ("  ", ""),
        ("1-3", "1-3"),
        ("3,1,2", "1-3"),
        ("5, 1-2 ,3", "1-3,5"),
        ("2-4,3-9", "2-9"),
        ("7,9-", "7,9-"),
        ("9-,12-14", "9-"),
        ("4-,1", "1,4-"),
        ("1-1", "1"),
    ],
)
def test_page_selections_have_one_canonical_form(selection: str | None, canonical: str) -> None:
    assert canonical_pages(selection) == canonical


def test_an_invalid_selection_is_refused() -> None:
    with pytest.raises(InputRejected):
        canonical_pages("3-1")


BASE: dict[str, Any] = {
    "sha256": "a" * 64,
    "model": "deepseek-ocr",
    "task": "markdown",
    "page_selection": "1-3",
    "routing_policy": {"mode": "auto", "target_ratio": 10.0},
    "dpi": 144,
    "min_crops": 2,
    "max_crops": 6,
}


def test_equivalent_requests_share_a_fingerprint() -> None:
    same = {**BASE, "page_selection": "3,2,1", "routing_policy": {"target_ratio": 10.0, "mode": "auto"}}
    assert fingerprint(**BASE) == fingerprint(**same)
    assert len(fingerprint(**BASE)) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"sha256": "b" * 64},
        {"model": "unlimited-ocr"},
        {"task": "free_ocr"},
        {"page_selection": "1-4"},
        {"page_selection": None},
        {"routing_policy": {"mode": "tiny"}},
        {"dpi": 200},
        {"max_crops": 9},
    ],
)
def test_anything_that_changes_the_result_changes_the_fingerprint(change: dict[str, Any]) -> None:
    assert fingerprint(**BASE) != fingerprint(**{**BASE, **change})
