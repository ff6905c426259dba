"""PDFs with some pages that cannot be drawn, written object by object so the damage is exact."""

from __future__ import annotations

import io

GOOD = "good"
NOT_A_PAGE = "not_a_page"  # the page tree points at a string: pdfium cannot load the page (corrupt)
HUGE = "huge"  # a 200 x 200 inch page: over the pixel cap even at the lowest dpi (page_too_large)


def pdf_with_pages(kinds: list[str]) -> bytes:
    """A PDF whose page *n* is of ``kinds[n - 1]``; good pages show ``Page n`` in Helvetica."""
    objects: dict[int, bytes] = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 3: _font()}
    kids: list[int] = []
    number = 4
    for page_no, kind in enumerate(kinds, start=1):
        kids.append(number)
        if kind == NOT_A_PAGE:
            objects[number] = b"(this is not a page object)"
            number += 1
            continue
        size = b"14400 14400" if kind == HUGE else b"612 792"
        content = b"BT /F1 24 Tf 72 700 Td (Page %d) Tj ET" % page_no
        objects[number] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 " + size + b"] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % (number + 1)
        )
        objects[number + 1] = b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"
        number += 2
    references = b" ".join(b"%d 0 R" % kid for kid in kids)
    objects[2] = b"<< /Type /Pages /Kids [" + references + b"] /Count %d >>" % len(kids)
    return _serialise(objects)


def _font() -> bytes:
    return b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _serialise(objects: dict[int, bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = out.tell()
        out.write(b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n")
    size = max(objects) + 1
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % size)
    for number in range(1, size):
        out.write(b"%010d 00000 n \n" % offsets[number])
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref))
    return out.getvalue()
