from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from scriptorium.errors import InputRejected, ReasonCode
from worker.prepare.sniff import HEAD_BYTES, PDF_HEADER_WINDOW, DocumentKind, sniff, sniff_file

_PILLOW_SAVE_FORMATS = {
    DocumentKind.PNG: "PNG",
    DocumentKind.JPEG: "JPEG",
    DocumentKind.TIFF: "TIFF",
    DocumentKind.WEBP: "WEBP",
    DocumentKind.GIF: "GIF",
    DocumentKind.BMP: "BMP",
}


def _encoded(kind: DocumentKind, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format=_PILLOW_SAVE_FORMATS[kind], **options)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", list(_PILLOW_SAVE_FORMATS))
def test_each_image_format_is_recognised_from_its_encoded_bytes(kind: DocumentKind) -> None:
    assert sniff(_encoded(kind)[:HEAD_BYTES]) is kind


def test_big_endian_tiff_is_recognised() -> None:
    assert sniff(b"MM\x00*\x00\x00\x00\x08") is DocumentKind.TIFF


def test_pdf_header_is_recognised() -> None:
    assert sniff(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj") is DocumentKind.PDF


def test_pdf_header_after_leading_garbage_is_still_a_pdf() -> None:
    assert sniff(b"\x00\x01junk\n%PDF-1.4\n") is DocumentKind.PDF


def test_pdf_header_beyond_the_first_kilobyte_is_not_a_pdf() -> None:
    head = b" " * PDF_HEADER_WINDOW + b"%PDF-1.4\n"
    with pytest.raises(InputRejected) as caught:
        sniff(head)
    assert caught.value.reason is ReasonCode.UNSUPPORTED_TYPE


def test_no_bytes_is_empty() -> None:
    with pytest.raises(InputRejected) as caught:
        sniff(b"")
    assert caught.value.reason is ReasonCode.EMPTY
    assert caught.value.message.endswith(".")


@pytest.mark.parametrize(
    "head",
    [
        b"PK\x03\x04\x14\x00\x06\x00",  # a zip (docx, xlsx, epub)
        b"<!DOCTYPE html><html><body>",
        b"Hello, this is plain text.\n",
        b"RIFF\x24\x00\x00\x00WAVEfmt ",  # RIFF, but audio
        b"BM" + b"\x00" * 40,  # "BM" without a BMP info header
    ],
)
def test_other_content_is_unsupported_with_a_sentence(head: bytes) -> None:
    with pytest.raises(InputRejected) as caught:
        sniff(head)
    assert caught.value.reason is ReasonCode.UNSUPPORTED_TYPE
    assert "PDF" in caught.value.message


def test_kind_comes_from_the_bytes_not_the_file_name(tmp_path: Path) -> None:
    misnamed = tmp_path / "scan.pdf"
    misnamed.write_bytes(_encoded(DocumentKind.PNG))
    assert sniff_file(misnamed) is DocumentKind.PNG


def test_every_kind_has_a_media_type() -> None:
    assert {kind.media_type for kind in DocumentKind} >= {"application/pdf", "image/png", "image/tiff"}
    assert all(kind.is_image for kind in DocumentKind if kind is not DocumentKind.PDF)
    assert not DocumentKind.PDF.is_image
