"""The render child: ``python -m worker.prepare.sandbox_child`` renders documents, one after another,
under an address-space cap and a per-document CPU-time cap (protocol: :mod:`worker.prepare.sandbox_protocol`).

Everything heavy (pdfium, Pillow, numpy, the settings) is imported once, before the child says it
is ready. It exits 0 when its stdin ends or when it retires after a ``done``; anything else (a
crash, a kill, :data:`EXIT_OUT_OF_MEMORY`, an exception it does not expect) is a fault to the
parent, which then replaces it.
"""

from __future__ import annotations

import math
import os
import resource
import sys
from typing import BinaryIO

from PIL import Image

from scriptorium.errors import InputRejected
from scriptorium.page_ranges import resolve_page_selection
from scriptorium.settings import PrepareSettings
from worker.prepare.render import RenderedPage, open_document
from worker.prepare.sandbox_protocol import (
    EXIT_OUT_OF_MEMORY,
    ChildEvent,
    ChildStart,
    EventKind,
    RenderedPageFile,
    SandboxRequest,
    page_file_name,
    write_rejected,
    write_rendered,
)

# Fast deflate: a page encodes about twice as fast as at the default level, for ~15% more bytes.
PNG_COMPRESS_LEVEL = 1
# A child whose address space grew by more than this share of its cap since it became ready
# retires after the document: what one document left behind must not squeeze the next one.
RETIRE_GROWTH_SHARE = 0.25


def main() -> int:
    replies = _private_reply_channel()
    start = ChildStart.from_json(sys.stdin.readline())
    if start.max_documents > 1:
        Image.init()  # every format plugin now, once, rather than while a document waits
    confine(start.limits, start.max_documents)
    ready_size = address_space_bytes()
    _send(replies, ChildEvent(EventKind.READY))
    for served in range(1, start.max_documents + 1):
        line = sys.stdin.readline()
        if not line:
            return 0
        request = SandboxRequest.from_json(line)
        _send(replies, ChildEvent(EventKind.STARTED, request.seq))
        allow_cpu_seconds(start.limits.render_timeout_s + 1)
        try:
            _render(request, start.limits)
        except InputRejected as rejection:
            write_rejected(request.out_dir, rejection)
        except MemoryError:
            return EXIT_OUT_OF_MEMORY
        grown = address_space_bytes() - ready_size
        retire = served == start.max_documents or grown > RETIRE_GROWTH_SHARE * _cap_bytes(start.limits)
        _send(replies, ChildEvent(EventKind.DONE, request.seq, retire=retire))
        if retire:
            return 0
    return 0


def confine(limits: PrepareSettings, max_documents: int) -> None:
    """Cap this process's address space and CPU time; the kernel enforces both from here on.

    The CPU cap's soft limit is moved forward for each document (:func:`allow_cpu_seconds`); its
    hard limit is what the child may use over its whole life, so it can never be raised past that.
    """
    address_space = _cap_bytes(limits)
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    lifetime = math.ceil(_cpu_seconds_used()) + max_documents * (limits.render_timeout_s + 1) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (lifetime, lifetime))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def allow_cpu_seconds(seconds: int) -> None:
    """Let the next document use ``seconds`` of CPU before the kernel sends SIGXCPU.

    The parent's wall clock normally fires first; the CPU cap still ends an orphaned child.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(_cpu_seconds_used()) + seconds
    resource.setrlimit(resource.RLIMIT_CPU, (min(soft, hard), hard))


def address_space_bytes() -> int:
    """This process's virtual size (what RLIMIT_AS counts); 0 where /proc is not there."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _render(request: SandboxRequest, limits: PrepareSettings) -> None:
    with open_document(request.path, limits, password=request.password) as document:
        pages = request.pages
        if request.page_selection is not None:
            pages = resolve_page_selection(request.page_selection, document.info.page_count)
        files = [
            _save(page, request) if isinstance(page, RenderedPage) else page
            for page in document.render_each(pages)
        ]
        write_rendered(request.out_dir, document.info, files)


def _save(page: RenderedPage, request: SandboxRequest) -> RenderedPageFile:
    path = request.out_dir / page_file_name(page.page_no)
    page.image.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL, dpi=(page.dpi, page.dpi))
    width, height = page.image.size
    return RenderedPageFile(
        page_no=page.page_no, path=path, width=width, height=height, dpi=page.dpi, text_layer=page.text_layer
    )


def _private_reply_channel() -> BinaryIO:
    """Keep the original stdout for events only; anything a library prints goes to stderr instead."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return replies


def _send(replies: BinaryIO, event: ChildEvent) -> None:
    replies.write(event.to_line())


def _cap_bytes(limits: PrepareSettings) -> int:
    return limits.render_memory_mb * 2**20


def _cpu_seconds_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    sys.exit(main())
