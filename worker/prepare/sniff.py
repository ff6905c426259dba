"""What a document is, decided by its first bytes alone (never its name or the client's MIME type)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from scriptorium.errors import InputRejected, ReasonCode

# PDF readers accept the "%PDF-" header anywhere in the first kilobyte; pdfium repairs such files.
PDF_HEADER_WINDOW = 1024
HEAD_BYTES = PDF_HEADER_WINDOW + 8

# The sizes of the known BMP info headers (BITMAPCOREHEADER … BITMAPV5HEADER), at offset 14.
_BMP_INFO_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


class DocumentKind(StrEnum):
    PDF = "pdf"
    PNG = "png"
    JPEG = "jpeg"
    TIFF = "tiff"
    WEBP = "webp"
    GIF = "gif"
    BMP = "bmp"

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self]

    @property
    def is_image(self) -> bool:
        return self is not DocumentKind.PDF


_MEDIA_TYPES = {
    DocumentKind.PDF: "application/pdf",
    DocumentKind.PNG: "image/png",
    DocumentKind.JPEG: "image/jpeg",
    DocumentKind.TIFF: "image/tiff",
    DocumentKind.WEBP: "image/webp",
    DocumentKind.GIF: "image/gif",
    DocumentKind.BMP: "image/bmp",
}

_SIGNATURES: tuple[tuple[bytes, DocumentKind], ...] = (
    (b"\x89PNG\r\n\x1a\n", DocumentKind.PNG),
    (b"\xff\xd8\xff", DocumentKind.JPEG),
    (b"II*\x00", DocumentKind.TIFF),
    (b"MM\x00*", DocumentKind.TIFF),
    (b"II+\x00", DocumentKind.TIFF),  # BigTIFF
    (b"MM\x00+", DocumentKind.TIFF),
    (b"GIF87a", DocumentKind.GIF),
    (b"GIF89a", DocumentKind.GIF),
)

SUPPORTED_SENTENCE = "a PDF or a PNG, JPEG, TIFF, WebP, GIF or BMP image"


def sniff(head: bytes) -> DocumentKind:
    """The kind of document whose first bytes are ``head`` (pass at least :data:`HEAD_BYTES`)."""
    if not head:
        raise InputRejected(ReasonCode.EMPTY, "The file is empty.")
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return DocumentKind.WEBP
    if _is_bmp(head):
        return DocumentKind.BMP
    if b"%PDF-" in head[:PDF_HEADER_WINDOW]:
        return DocumentKind.PDF
    raise InputRejected(
        ReasonCode.UNSUPPORTED_TYPE,
        f"The file is not a document this service reads; send {SUPPORTED_SENTENCE}.",
    )


def sniff_file(path: Path) -> DocumentKind:
    with path.open("rb") as stream:
        return sniff(stream.read(HEAD_BYTES))


def _is_bmp(head: bytes) -> bool:
    if not head.startswith(b"BM") or len(head) < 18:
        return False
    return int.from_bytes(head[14:18], "little") in _BMP_INFO_HEADER_SIZES
