"""Intake of one stored file: enforce the limits, then rasterise the pages one at a time.

Every refusal is an :class:`InputRejected` carrying a reason code and a sentence for the client.
The limits on bytes, page count and page selection are checked before any page is rendered.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.settings import PrepareSettings
from worker.prepare.document import DocumentInfo, FailedPage, PageSource, RenderedPage
from worker.prepare.images import ImageSource
from worker.prepare.pdf import PdfSource
from worker.prepare.sniff import DocumentKind, sniff_file

__all__ = [
    "PAGE_FAILURES",
    "DocumentInfo",
    "FailedPage",
    "OpenDocument",
    "RenderedPage",
    "inspect_document",
    "open_document",
    "render_pages",
    "select_pages",
]


# Refusals of one page that leave the rest of the document readable.
PAGE_FAILURES = frozenset({ReasonCode.CORRUPT, ReasonCode.PAGE_TOO_LARGE})


class OpenDocument:
    """A document that passed the document-level limits, held open for rendering."""

    def __init__(self, info: DocumentInfo, source: PageSource) -> None:
        self.info = info
        self._source = source

    def render(self, pages: Sequence[int] | None = None) -> Iterator[RenderedPage]:
        """Render ``pages`` (1-based; all when None) lazily, in ascending order.

        The selection is validated here, before the first page is rendered.
        """
        selected = select_pages(pages, self.info.page_count)
        return (self._source.render_page(page_no) for page_no in selected)

    def render_each(self, pages: Sequence[int] | None = None) -> Iterator[RenderedPage | FailedPage]:
        """Like :meth:`render`, but a page that cannot be drawn (a corrupt page object, a page over
        the pixel cap) comes out as a :class:`FailedPage` and the next page is read. When no
        selected page could be drawn the first page's refusal is raised at the end: a document
        with nothing readable fails as a whole, as with :meth:`render`."""
        selected = select_pages(pages, self.info.page_count)
        first_failure: InputRejected | None = None
        rendered_any = False
        for page_no in selected:
            try:
                page = self._source.render_page(page_no)
            except InputRejected as rejected:
                if rejected.reason not in PAGE_FAILURES:
                    raise
                first_failure = first_failure or rejected
                yield FailedPage(page_no=page_no, reason=rejected.reason, message=rejected.message)
                continue
            rendered_any = True
            yield page
        if first_failure is not None and not rendered_any:
            raise first_failure


@contextmanager
def open_document(
    path: Path, limits: PrepareSettings, *, password: str | None = None
) -> Iterator[OpenDocument]:
    kind = _admit_file(path, limits)
    source = _open_source(path, kind, limits, password)
    try:
        if source.page_count > limits.max_pages:
            raise InputRejected(
                ReasonCode.TOO_MANY_PAGES,
                f"The document has {source.page_count:,} pages; at most {limits.max_pages:,} are accepted.",
            )
        yield OpenDocument(DocumentInfo(kind=kind, page_count=source.page_count), source)
    finally:
        source.close()


def inspect_document(path: Path, limits: PrepareSettings, *, password: str | None = None) -> DocumentInfo:
    with open_document(path, limits, password=password) as document:
        return document.info


def render_pages(
    path: Path,
    limits: PrepareSettings,
    *,
    pages: Sequence[int] | None = None,
    password: str | None = None,
) -> Generator[RenderedPage, None, None]:
    """Yield the selected pages one by one; the file stays open until the generator is exhausted or closed.

    Refusals (limits, selection) surface at the first ``next()``, before any page is rendered.
    """
    with open_document(path, limits, password=password) as document:
        yield from document.render(pages)


def select_pages(pages: Sequence[int] | None, page_count: int) -> list[int]:
    """The 1-based page numbers to render, sorted and without repeats."""
    if pages is None:
        return list(range(1, page_count + 1))
    if not pages:
        raise InputRejected(ReasonCode.INVALID_PAGES, "The page selection is empty.")
    outside = sorted({page for page in pages if not 1 <= page <= page_count})
    if outside:
        listed = ", ".join(str(page) for page in outside[:5]) + (" …" if len(outside) > 5 else "")
        raise InputRejected(
            ReasonCode.INVALID_PAGES,
            f"The document has {page_count:,} page{'s' if page_count != 1 else ''}; "
            f"the selection asks for page{'s' if len(outside) != 1 else ''} {listed}.",
        )
    return sorted(set(pages))


def _admit_file(path: Path, limits: PrepareSettings) -> DocumentKind:
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise InputRejected(
            ReasonCode.TOO_LARGE,
            f"The file is {size / 2**20:,.1f} MiB; the limit is {limits.max_bytes / 2**20:,.1f} MiB.",
        )
    return sniff_file(path)


def _open_source(path: Path, kind: DocumentKind, limits: PrepareSettings, password: str | None) -> PageSource:
    if kind is DocumentKind.PDF:
        return PdfSource(path, limits, password=password)
    return ImageSource(path, kind, limits)
