"""Assembling a document's result from its pages, in page order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scriptorium.db.models import Page
from scriptorium.states import PageState

PAGE_SEPARATOR = "\n\n<--- Page Split --->\n\n"  # the separator DeepSeek-OCR's own PDF pipeline uses


def failed_pages(pages: Sequence[Page]) -> list[int]:
    bad = {PageState.FAILED, PageState.DEAD, PageState.CANCELLED}
    return [page.page_no for page in pages if page.state in bad]


def assemble_markdown(pages: Sequence[Page]) -> str:
    """The document's markdown: each read page in order; blank pages contribute nothing."""
    parts = [
        (page.markdown or "").strip()
        for page in sorted(pages, key=lambda p: p.page_no)
        if page.state == PageState.DONE
    ]
    return PAGE_SEPARATOR.join(part for part in parts if part) + "\n"


def assemble_json(document_id: str, pages: Sequence[Page]) -> dict[str, Any]:
    return {
        "document_id": document_id,
        "failed_pages": failed_pages(pages),
        "pages": [
            {
                "page_no": page.page_no,
                "state": page.state,
                "width": page.width,
                "height": page.height,
                "mode": page.mode,
                "markdown": page.markdown,
                "blocks": page.blocks or [],
                "figures": [{"name": f["name"], "box": f["box"]} for f in page.figures or []],
                "under_read": page.under_read,
            }
            for page in sorted(pages, key=lambda p: p.page_no)
        ],
    }
