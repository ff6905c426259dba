"""The render child: ``python -m worker.prepare.sandbox_child`` reads a request on stdin, renders the
document under memory and CPU limits, writing each page as a PNG as it goes, then writes the manifest.

It exits 0 when it wrote a manifest (rendered or refused); anything else is a crash to the parent.
"""

from __future__ import annotations

import resource
import sys

from scriptorium.errors import InputRejected
from scriptorium.page_ranges import resolve_page_selection
from scriptorium.settings import PrepareSettings
from worker.prepare.render import RenderedPage, open_document
from worker.prepare.sandbox_protocol import (
    EXIT_OUT_OF_MEMORY,
    RenderedPageFile,
    SandboxRequest,
    page_file_name,
    write_rejected,
    write_rendered,
)

# Fast deflate: a page encodes about twice as fast as at the default level, for ~15% more bytes.
PNG_COMPRESS_LEVEL = 1


def main() -> int:
    request = SandboxRequest.from_json(sys.stdin.read())
    confine(request.limits)
    try:
        _render(request)
    except InputRejected as rejection:
        write_rejected(request.out_dir, rejection)
    except MemoryError:
        return EXIT_OUT_OF_MEMORY
    return 0


def confine(limits: PrepareSettings) -> None:
    """Cap this process's address space and CPU time; the kernel enforces both from here on."""
    address_space = limits.render_memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    # The parent's wall clock normally fires first; the CPU cap still ends an orphaned child.
    cpu_seconds = limits.render_timeout_s + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _render(request: SandboxRequest) -> None:
    with open_document(request.path, request.limits, password=request.password) as document:
        pages = request.pages
        if request.page_selection is not None:
            pages = resolve_page_selection(request.page_selection, document.info.page_count)
        files = [_save(page, request) for page in document.render(pages)]
        write_rendered(request.out_dir, document.info, files)


def _save(page: RenderedPage, request: SandboxRequest) -> RenderedPageFile:
    path = request.out_dir / page_file_name(page.page_no)
    page.image.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL, dpi=(page.dpi, page.dpi))
    width, height = page.image.size
    return RenderedPageFile(
        page_no=page.page_no, path=path, width=width, height=height, dpi=page.dpi, text_layer=page.text_layer
    )


if __name__ == "__main__":
    sys.exit(main())
