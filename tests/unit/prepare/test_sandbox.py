"""The confined render child, run for real: results, refusals, timeouts and crashes reach the caller."""

from __future__ import annotations

import signal
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.settings import PrepareSettings
from worker.prepare.document import DocumentInfo
from worker.prepare.render import inspect_document, render_pages
from worker.prepare.sandbox import classify_child_exit, render_document_sandboxed
from worker.prepare.sandbox_protocol import EXIT_OUT_OF_MEMORY, RenderedPageFile, write_rendered
from worker.prepare.sniff import DocumentKind

FOUR_HUNDRED_PAGES = "huge/pdf2image-memory-error-test-400p.pdf"


def test_pages_come_back_as_png_files_equal_to_the_in_process_render(
    pdf_real: Path, tmp_path: Path, limits: PrepareSettings
) -> None:
    path = pdf_real / "code_and_formula.pdf"
    result = render_document_sandboxed(path, tmp_path / "out", limits)

    assert result.info == DocumentInfo(kind=DocumentKind.PDF, page_count=2)
    in_process = list(render_pages(path, limits))
    assert [page.page_no for page in result.pages] == [1, 2]
    for page, expected in zip(result.pages, in_process, strict=True):
        with Image.open(page.path) as png:
            assert (png.format, png.size) == ("PNG", (page.width, page.height))
            assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(expected.image))
        assert page.dpi == expected.dpi == 144
        assert page.text_layer == expected.text_layer
        assert page.text_layer


def test_a_selected_range_of_a_long_document(
    bad_input: Path, tmp_path: Path, limits: PrepareSettings
) -> None:
    result = render_document_sandboxed(bad_input / FOUR_HUNDRED_PAGES, tmp_path, limits, pages=[3, 2])

    assert result.info.page_count == 400
    assert [page.page_no for page in result.pages] == [2, 3]
    assert sorted(path.name for path in tmp_path.glob("*.png")) == ["page-00002.png", "page-00003.png"]


def test_a_textual_selection_is_resolved_against_the_page_count(
    pdf_real: Path, tmp_path: Path, limits: PrepareSettings
) -> None:
    result = render_document_sandboxed(pdf_real / "multi_page.pdf", tmp_path, limits, page_selection="1,4-")

    assert [page.page_no for page in result.pages] == [1, 4, 5]


def test_a_textual_selection_beyond_the_document_is_invalid(
    pdf_real: Path, tmp_path: Path, limits: PrepareSettings
) -> None:
    with pytest.raises(InputRejected) as caught:
        render_document_sandboxed(pdf_real / "multi_page.pdf", tmp_path, limits, page_selection="2-9")

    assert caught.value.reason is ReasonCode.INVALID_PAGES
    assert not list(tmp_path.glob("*.png"))


def test_a_list_and_a_textual_selection_together_is_a_programming_error(
    pdf_real: Path, tmp_path: Path, limits: PrepareSettings
) -> None:
    with pytest.raises(ValueError, match="not both"):
        render_document_sandboxed(pdf_real / "crazyones.pdf", tmp_path, limits, pages=[1], page_selection="1")


def test_a_refusal_in_the_child_is_the_same_refusal_in_the_caller(
    bad_input: Path, tmp_path: Path, limits: PrepareSettings
) -> None:
    path = bad_input / "encrypted/libreoffice-writer-password.pdf"
    with pytest.raises(InputRejected) as in_process:
        inspect_document(path, limits)

    with pytest.raises(InputRejected) as sandboxed:
        render_document_sandboxed(path, tmp_path, limits)

    assert (sandboxed.value.reason, sandboxed.value.message) == (
        in_process.value.reason,
        in_process.value.message,
    )


def test_the_password_reaches_the_child(
    bad_input: Path, tmp_path: Path, limits: PrepareSettings, user_passwords: dict[str, str]
) -> None:
    name = "encrypted/2206.01062_pg3.pdf"
    result = render_document_sandboxed(bad_input / name, tmp_path, limits, password=user_passwords[name])
    assert "DocLayNet" in (result.pages[0].text_layer or "")


def test_a_decompression_bomb_is_refused_in_the_child(tmp_path: Path, limits: PrepareSettings) -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    bomb = tmp_path / "bomb.png"
    header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))

    with pytest.raises(InputRejected) as caught:
        render_document_sandboxed(bomb, tmp_path / "out", limits)
    assert caught.value.reason is ReasonCode.PAGE_TOO_LARGE


def test_a_render_past_the_wall_clock_is_a_timeout_and_the_caller_carries_on(
    bad_input: Path, pdf_real: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(InputRejected) as caught:
        render_document_sandboxed(
            bad_input / FOUR_HUNDRED_PAGES, tmp_path / "slow", PrepareSettings(render_timeout_s=1)
        )

    assert caught.value.reason is ReasonCode.RENDER_TIMEOUT
    assert time.monotonic() - started < 10
    after = render_document_sandboxed(pdf_real / "crazyones.pdf", tmp_path / "next", PrepareSettings())
    assert after.info.page_count == 1


def test_a_render_over_the_memory_limit_crashes_the_child_not_the_caller(
    bad_input: Path, pdf_real: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # A result left behind by an earlier attempt must not be taken for this one.
    stale = out_dir / "page-00001.png"
    Image.new("RGB", (4, 4)).save(stale)
    stale_page = RenderedPageFile(page_no=1, path=stale, width=4, height=4, dpi=144, text_layer=None)
    write_rendered(out_dir, DocumentInfo(kind=DocumentKind.PDF, page_count=1), [stale_page])
    poster = bad_input / "huge/poster.pdf"  # 3600 x 7200 px at 144 dpi: ~78 MB of pixels

    with pytest.raises(InputRejected) as caught:
        render_document_sandboxed(poster, out_dir, PrepareSettings(render_memory_mb=256))

    assert caught.value.reason is ReasonCode.RENDER_CRASHED
    after = render_document_sandboxed(pdf_real / "crazyones.pdf", tmp_path / "next", PrepareSettings())
    assert after.pages[0].width == 1224


@pytest.mark.parametrize(
    ("returncode", "reason", "words"),
    [
        (EXIT_OUT_OF_MEMORY, ReasonCode.RENDER_CRASHED, "2,048 MiB"),
        (-signal.SIGKILL, ReasonCode.RENDER_CRASHED, "SIGKILL"),
        (-signal.SIGSEGV, ReasonCode.RENDER_CRASHED, "SIGSEGV"),
        (-signal.SIGXCPU, ReasonCode.RENDER_TIMEOUT, "120 s of CPU time"),
        (1, ReasonCode.RENDER_CRASHED, "exit status 1"),
    ],
)
def test_how_a_child_ended_decides_the_failure(returncode: int, reason: ReasonCode, words: str) -> None:
    failure = classify_child_exit(returncode, PrepareSettings())
    assert failure.reason is reason
    assert words in failure.message
