"""PDF documents through pdfium: open (passwords, repair), rasterise under the pixel cap, read the text layer.

pdfium is not thread-safe: use one document per process at a time (the sandbox child does).
"""

from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.settings import PrepareSettings
from worker.prepare.document import RenderedPage
from worker.prepare.raster_size import MIN_DPI, POINTS_PER_INCH, RasterPlan, plan_raster


class PdfSource:
    """An opened PDF; pages are loaded, rendered and released one at a time."""

    def __init__(self, path: Path, limits: PrepareSettings, *, password: str | None = None) -> None:
        self._limits = limits
        self._pdf = _open(path, password)
        # Filled-in form fields are part of what the page shows.
        self._pdf.init_forms()
        self._page_count = len(self._pdf)

    @property
    def page_count(self) -> int:
        return self._page_count

    def render_page(self, page_no: int) -> RenderedPage:
        try:
            page = self._pdf[page_no - 1]
        except pdfium.PdfiumError as exc:
            raise InputRejected(ReasonCode.CORRUPT, f"Page {page_no} of the PDF cannot be read.") from exc
        try:
            plan = self._plan(page_no, page)
            image = _rasterise(page, plan)
            text = _text_layer(page)
        except pdfium.PdfiumError as exc:
            raise InputRejected(ReasonCode.CORRUPT, f"Page {page_no} of the PDF cannot be drawn.") from exc
        finally:
            page.close()
        return RenderedPage(page_no=page_no, image=image, text_layer=text, dpi=plan.dpi)

    def close(self) -> None:
        self._pdf.close()

    def _plan(self, page_no: int, page: pdfium.PdfPage) -> RasterPlan:
        width_pt, height_pt = page.get_size()  # after the page's /Rotate
        try:
            plan = plan_raster(
                width_pt, height_pt, dpi=self._limits.dpi, max_pixels=self._limits.max_page_pixels
            )
        except ValueError as exc:
            raise InputRejected(ReasonCode.CORRUPT, f"Page {page_no} of the PDF has no area.") from exc
        if plan is None:
            width_in, height_in = width_pt / POINTS_PER_INCH, height_pt / POINTS_PER_INCH
            raise InputRejected(
                ReasonCode.PAGE_TOO_LARGE,
                f"Page {page_no} measures {width_in:,.0f} x {height_in:,.0f} inches: even at {MIN_DPI} dpi "
                f"it exceeds the limit of {self._limits.max_page_pixels:,} pixels per page.",
            )
        return plan


def _open(path: Path, password: str | None) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(path, password=password or None)
    except pdfium.PdfiumError as exc:
        failure = _open_failure(exc.err_code, password or None)
        if not password or exc.err_code != pdfium_c.FPDF_ERR_PASSWORD:
            raise failure from exc
    # A PDF restricted only by an owner password opens without one, whatever password came with it.
    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError:
        raise failure from None


def _open_failure(err_code: int | None, password: str | None) -> InputRejected:
    if err_code == pdfium_c.FPDF_ERR_PASSWORD:
        if password is None:
            return InputRejected(
                ReasonCode.ENCRYPTED, "The PDF is password-protected; send its password to process it."
            )
        return InputRejected(ReasonCode.ENCRYPTED, "The password sent does not open this PDF.")
    if err_code == pdfium_c.FPDF_ERR_SECURITY:
        return InputRejected(ReasonCode.ENCRYPTED, "The PDF uses an encryption scheme that is not supported.")
    if err_code == pdfium_c.FPDF_ERR_SUCCESS:
        return InputRejected(ReasonCode.CORRUPT, "The PDF contains no pages.")
    return InputRejected(ReasonCode.CORRUPT, "The PDF is damaged beyond repair and cannot be opened.")


def _rasterise(page: pdfium.PdfPage, plan: RasterPlan) -> Image.Image:
    # Opaque white paper, RGB byte order: the reference pipeline renders without alpha.
    bitmap = page.render(scale=plan.dpi / POINTS_PER_INCH, rev_byteorder=True, may_draw_forms=True)
    image: Image.Image = bitmap.to_pil()
    return image


def _text_layer(page: pdfium.PdfPage) -> str:
    textpage = page.get_textpage()
    try:
        text: str = textpage.get_text_bounded()
    finally:
        textpage.close()
    return text.replace("\r\n", "\n").replace("\r", "\n")
