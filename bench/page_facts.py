"""How long measuring page facts takes: CPU time per page, one core, pages rendered at 144 dpi.

Run from the repository root:  python -m bench.page_facts [--repeats 3] [FOLDER ...]

Every PDF page and image under the folders (default: the labelled pages and the real PDFs of the
shared corpus) is rendered once by the prepare step, then ``measure_page`` is timed on it with
the process CPU clock (immune to other load on the machine); each page's best of ``--repeats``
runs counts. The target is a median under 20 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from scriptorium.errors import InputRejected
from scriptorium.settings import PrepareSettings
from tests.support.corpus import corpus_path
from worker.prepare.render import render_pages
from worker.routing.facts import measure_page

DEFAULT_FOLDERS = (corpus_path("pages-labelled"), corpus_path("pdf-real"))
DOCUMENT_SUFFIXES = {".pdf", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".webp"}
TARGET_MS = 20.0


@dataclass(frozen=True)
class Timing:
    source: str
    page_no: int
    megapixels: float
    milliseconds: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, default=list(DEFAULT_FOLDERS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    timings = [
        _time_page(source, page_no, image, text, args.repeats)
        for source, page_no, image, text in _pages(args.folders)
    ]
    if not timings:
        raise SystemExit("no pages found")
    _report(timings)


def _pages(folders: list[Path]) -> Iterator[tuple[str, int, Image.Image, str | None]]:
    limits = PrepareSettings()
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in DOCUMENT_SUFFIXES or "imgs" in path.parts:
                continue
            try:
                for page in render_pages(path, limits):
                    yield (
                        f"{folder.name}/{path.relative_to(folder)}",
                        page.page_no,
                        page.image,
                        page.text_layer,
                    )
            except InputRejected as rejection:
                print(f"skipped {path}: {rejection.reason}")


def _time_page(source: str, page_no: int, image: Image.Image, text: str | None, repeats: int) -> Timing:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        measure_page(image, text)
        best = min(best, time.process_time() - started)
    return Timing(source, page_no, image.width * image.height / 1e6, best * 1000)


def _report(timings: list[Timing]) -> None:
    milliseconds = sorted(t.milliseconds for t in timings)
    median = statistics.median(milliseconds)
    p90 = milliseconds[int(0.9 * (len(milliseconds) - 1))]
    print(f"pages: {len(timings)}  median {median:.1f} ms  p90 {p90:.1f} ms  max {milliseconds[-1]:.1f} ms")
    print(f"target: median under {TARGET_MS:.0f} ms -> {'met' if median < TARGET_MS else 'MISSED'}")
    by_size: dict[str, list[float]] = {}
    for timing in timings:
        band = "<= 2.5 MP" if timing.megapixels <= 2.5 else "> 2.5 MP"
        by_size.setdefault(band, []).append(timing.milliseconds)
    for band, values in sorted(by_size.items()):
        print(f"  {band:>9}: {len(values):3d} pages, median {statistics.median(values):.1f} ms")
    print("slowest:")
    for timing in sorted(timings, key=lambda t: t.milliseconds, reverse=True)[:5]:
        print(
            f"  {timing.milliseconds:6.1f} ms  {timing.megapixels:5.1f} MP  {timing.source} p{timing.page_no}"
        )


if __name__ == "__main__":
    main()
