"""Raster images as documents: TIFF frames are pages, every other format is one page (its first frame)."""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, ImageOps

from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.settings import PrepareSettings
from worker.prepare.color import to_rgb
from worker.prepare.document import RenderedPage
from worker.prepare.raster_size import MIN_DPI
from worker.prepare.sniff import DocumentKind

_PILLOW_FORMATS = {
    DocumentKind.PNG: "PNG",
    DocumentKind.JPEG: "JPEG",
    DocumentKind.TIFF: "TIFF",
    DocumentKind.WEBP: "WEBP",
    DocumentKind.GIF: "GIF",
    DocumentKind.BMP: "BMP",
}
_MULTI_PAGE_KINDS = frozenset({DocumentKind.TIFF})

# What Pillow raises on malformed or truncated data, depending on the format and where it breaks.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError)

# A declared resolution outside this range is a placeholder (TIFFs often say 1 or 72000 dpi).
_MAX_PLAUSIBLE_DPI = 4800


class ImageSource:
    """An opened image file; pages are decoded one at a time, on demand."""

    def __init__(self, path: Path, kind: DocumentKind, limits: PrepareSettings) -> None:
        self._limits = limits
        with _pillow_guards("The image"):
            self._image = Image.open(path, formats=[_PILLOW_FORMATS[kind]])
        try:
            with _pillow_guards("The image"):
                frames = getattr(self._image, "n_frames", 1) if kind in _MULTI_PAGE_KINDS else 1
            self._page_count = int(frames)
        except InputRejected:
            self._image.close()
            raise

    @property
    def page_count(self) -> int:
        return self._page_count

    def render_page(self, page_no: int) -> RenderedPage:
        subject = f"Page {page_no} of the image" if self._page_count > 1 else "The image"
        with _pillow_guards(subject):
            self._image.seek(page_no - 1)
            self._refuse_oversized(subject)
            upright = ImageOps.exif_transpose(self._image)
            page = to_rgb(upright)
        return RenderedPage(page_no=page_no, image=page, text_layer=None, dpi=self._declared_dpi())

    def close(self) -> None:
        self._image.close()

    def _refuse_oversized(self, subject: str) -> None:
        width, height = self._image.size
        if width * height > self._limits.max_page_pixels:
            raise InputRejected(
                ReasonCode.PAGE_TOO_LARGE,
                f"{subject} is {width} x {height} pixels, more than the limit of "
                f"{self._limits.max_page_pixels:,} pixels per page.",
            )

    def _declared_dpi(self) -> int:
        declared = self._image.info.get("dpi")
        if isinstance(declared, tuple) and declared:
            horizontal = round(float(declared[0]))
            if MIN_DPI <= horizontal <= _MAX_PLAUSIBLE_DPI:
                return horizontal
        return self._limits.dpi


@contextmanager
def _pillow_guards(subject: str) -> Iterator[None]:
    """Pillow's decompression-bomb warning becomes an error; its decode errors become ``corrupt``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputRejected(
                ReasonCode.PAGE_TOO_LARGE, f"{subject} has too many pixels to decode safely."
            ) from exc
        except _DECODE_ERRORS as exc:
            raise InputRejected(
                ReasonCode.CORRUPT, f"{subject} is damaged or truncated and cannot be decoded."
            ) from exc
