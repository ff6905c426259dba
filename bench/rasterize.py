"""Rasterisation throughput on the real PDFs: in-process versus through the confined render child
(a child started per document, and the worker's warm child serving them all).

Run from the repository root:  python -m bench.rasterize [--max-pages 12] [--dpi 144]

In-process figures are per page (render alone, then render plus the PNG encoding the sandbox also
does). The sandbox is timed per call, one call per document, so its per-page figure is the call's
wall time divided by its pages: with a child per document it includes starting the child (~0.4 s)
spread over those pages; the warm child was started before the clock.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scriptorium.settings import PrepareSettings
from tests.support.corpus import corpus_path
from worker.prepare.render import inspect_document, render_pages
from worker.prepare.sandbox import RenderSandbox, SandboxResult, render_document_sandboxed
from worker.prepare.sandbox_child import PNG_COMPRESS_LEVEL

DEFAULT_CORPUS = corpus_path("pdf-real")


@dataclass(frozen=True)
class Row:
    name: str
    page_ms: list[float]  # one value per page, or per call spread over its pages
    pages: int
    seconds: float


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--max-pages", type=int, default=12, help="pages per document (from page 1)")
    parser.add_argument("--dpi", type=int, default=144)
    args = parser.parse_args(argv)

    limits = PrepareSettings(dpi=args.dpi)
    documents = sorted(args.corpus.glob("*.pdf"))
    if not documents:
        raise SystemExit(f"no PDFs in {args.corpus}: put the corpus beside the checkout, or pass --corpus")
    selections = {path: _first_pages(path, limits, args.max_pages) for path in documents}

    rows = [
        _in_process(selections, limits, encode=False),
        _in_process(selections, limits, encode=True),
        _sandboxed(selections, limits),
        _sandboxed_warm(selections, limits),
    ]
    total_pages = sum(len(pages) for pages in selections.values())
    print(f"{len(documents)} PDFs from {args.corpus}, {total_pages} pages at {args.dpi} dpi\n")
    _print_table(rows)


def _first_pages(path: Path, limits: PrepareSettings, most: int) -> list[int]:
    return list(range(1, min(most, inspect_document(path, limits).page_count) + 1))


def _in_process(selections: dict[Path, list[int]], limits: PrepareSettings, *, encode: bool) -> Row:
    page_ms: list[float] = []
    started = time.perf_counter()
    for path, pages in selections.items():
        rendered = render_pages(path, limits, pages=pages)
        while True:
            page_started = time.perf_counter()
            page = next(rendered, None)
            if page is None:
                break
            if encode:
                page.image.save(io.BytesIO(), format="PNG", compress_level=PNG_COMPRESS_LEVEL)
            page_ms.append((time.perf_counter() - page_started) * 1000)
    name = "in-process render + PNG" if encode else "in-process render"
    return Row(name, page_ms, len(page_ms), time.perf_counter() - started)


def _sandboxed(selections: dict[Path, list[int]], limits: PrepareSettings) -> Row:
    def render(path: Path, out_dir: Path, pages: list[int]) -> SandboxResult:
        return render_document_sandboxed(path, out_dir, limits, pages=pages)

    return _per_call("sandbox, a child per document", selections, render)


def _sandboxed_warm(selections: dict[Path, list[int]], limits: PrepareSettings) -> Row:
    with RenderSandbox(limits) as sandbox:
        sandbox.prestart()

        def render(path: Path, out_dir: Path, pages: list[int]) -> SandboxResult:
            return sandbox.render(path, out_dir, pages=pages)

        return _per_call("sandbox, warm child", selections, render)


def _per_call(
    name: str, selections: dict[Path, list[int]], render: Callable[[Path, Path, list[int]], SandboxResult]
) -> Row:
    page_ms: list[float] = []
    pages_done = 0
    started = time.perf_counter()
    for path, pages in selections.items():
        with tempfile.TemporaryDirectory() as out_dir:
            call_started = time.perf_counter()
            result = render(path, Path(out_dir), pages)
            call_ms = (time.perf_counter() - call_started) * 1000
        page_ms.extend([call_ms / len(result.pages)] * len(result.pages))
        pages_done += len(result.pages)
    return Row(name, page_ms, pages_done, time.perf_counter() - started)


def _print_table(rows: list[Row]) -> None:
    header = f"{'path':<32} {'pages':>6} {'median ms/page':>15} {'p95 ms/page':>12} {'pages/s':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        p95 = statistics.quantiles(row.page_ms, n=20, method="inclusive")[-1]
        print(
            f"{row.name:<32} {row.pages:>6} {statistics.median(row.page_ms):>15.1f} {p95:>12.1f} "
            f"{row.pages / row.seconds:>8.1f}"
        )


if __name__ == "__main__":
    main()
