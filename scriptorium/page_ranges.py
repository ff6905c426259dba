"""Page selections like ``1-3,5,9-`` (1-based, inclusive; an open end means "to the last page")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from scriptorium.errors import InputRejected, ReasonCode

_PART = re.compile(r"^\s*([0-9]+)\s*(?:(-)\s*([0-9]+)?\s*)?$")
MAX_SELECTION_LENGTH = 1024
MAX_PAGE_NUMBER = 2**31 - 1  # page numbers are 32-bit integer columns; none can be larger


@dataclass(frozen=True)
class PageRange:
    first: int
    last: int | None  # None: through the last page


def parse_page_selection(text: str) -> tuple[PageRange, ...]:
    """Parse a selection, raising InputRejected(INVALID_PAGES) with the offending part."""
    if len(text) > MAX_SELECTION_LENGTH:
        raise InputRejected(ReasonCode.INVALID_PAGES, "page selection is too long")
    ranges: list[PageRange] = []
    for part in text.split(","):
        match = _PART.match(part)
        if not match:
            raise InputRejected(
                ReasonCode.INVALID_PAGES, f"cannot read page selection part {part.strip()!r}; use e.g. 1-3,5"
            )
        first = int(match.group(1))
        last = first if match.group(2) is None else (int(match.group(3)) if match.group(3) else None)
        if max(first, last or 0) > MAX_PAGE_NUMBER:
            raise InputRejected(
                ReasonCode.INVALID_PAGES,
                f"page range {part.strip()[:40]!r} names a page above {MAX_PAGE_NUMBER}",
            )
        if first < 1 or (last is not None and last < first):
            raise InputRejected(ReasonCode.INVALID_PAGES, f"page range {part.strip()!r} is empty or below 1")
        ranges.append(PageRange(first, last))
    return tuple(ranges)


def resolve_page_selection(text: str | None, page_count: int) -> list[int]:
    """The sorted, distinct pages a selection names in a document of ``page_count`` pages."""
    if text is None or not text.strip():
        return list(range(1, page_count + 1))
    selected: set[int] = set()
    for page_range in parse_page_selection(text):
        last = page_count if page_range.last is None else page_range.last
        if page_range.first > page_count or last > page_count:
            raise InputRejected(
                ReasonCode.INVALID_PAGES,
                f"the document has {page_count} pages; the selection asks for up to page "
                f"{max(page_range.first, last)}",
            )
        selected.update(range(page_range.first, last + 1))
    return sorted(selected)
