"""The values intake produces, and the shape every format's page source has."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from scriptorium.errors import ReasonCode
from worker.prepare.sniff import DocumentKind


@dataclass(frozen=True)
class RenderedPage:
    page_no: int  # 1-based
    image: Image.Image  # RGB, EXIF orientation applied, at ``dpi`` for PDFs
    text_layer: str | None  # the PDF text layer ("" when the page has none); None for images
    # PDFs: the effective dpi, lower than requested when clamped to the pixel cap. Images: the
    # resolution the file declares, or the configured dpi when it declares none that is plausible.
    dpi: int


@dataclass(frozen=True)
class FailedPage:
    """A page of an otherwise readable document that could not be drawn; it fails on its own."""

    page_no: int  # 1-based
    reason: ReasonCode
    message: str


@dataclass(frozen=True)
class DocumentInfo:
    kind: DocumentKind
    page_count: int


class PageSource(Protocol):
    """An opened document that rasterises one page at a time."""

    @property
    def page_count(self) -> int: ...

    def render_page(self, page_no: int) -> RenderedPage: ...

    def close(self) -> None: ...
