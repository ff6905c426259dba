"""Small single-page documents in bulk through one CPU worker's prepare path: a render child started
per document (before) against the worker's warm render child (after).

Starts real services (a scratch Postgres database, a Redis database, SeaweedFS), stores N
single-page PNG documents (a scanned-letter-sized page, 1224 x 1584) and N more for the other
side, and calls :func:`worker.preparation.prepare_document` on each, exactly as a CPU worker's
task does: claim the document, download it from S3, render it in the sandbox, measure and route
the page, store the page image in S3, commit the page rows and the document's move to
``processing``, dispatch. The two sides run in alternating blocks, so that the shared machine's
load drift falls on both alike. Then the sandbox alone (the same PNG from local disk, nothing
else) is timed both ways.

    .venv/bin/python -m bench.prepare_small [--documents 1000] [--block 50] [--render-only 200]

"Before" is a :class:`RenderSandbox` that serves one document per child and starts no child
ahead of need: start the interpreter, import, confine, render, exit, per document, as the sandbox
did before warm children (a one-document child skips warming up every image plugin). "After" is
the worker's own sandbox (``render_sandbox()``), pre-started as a CPU worker process does at
start-up.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from bench.services import scratch_services, settings_from
from scriptorium.db.models import Document
from scriptorium.logging import configure_logging
from scriptorium.settings import Settings
from scriptorium.states import DocumentState
from scriptorium.storage import raw_key
from tests.support import builders
from tests.support.corpus import corpus_path
from worker.preparation import prepare_document
from worker.prepare.render import render_pages
from worker.prepare.sandbox import RenderSandbox
from worker.runtime import WorkerRuntime

SOURCE_PAGE = corpus_path("pdf-real", "crazyones.pdf")  # one text page, US Letter
TARGET_RATIO = 3.0
BEFORE = "before: a child per document"
AFTER = "after: warm child"


@dataclass
class Side:
    name: str
    runtime: WorkerRuntime
    documents: list[uuid.UUID]
    seconds: float = 0.0
    done: int = 0
    per_document: list[float] = field(default_factory=list)

    def rate(self) -> float:
        return self.done / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=1000, help="documents prepared on each side")
    parser.add_argument("--block", type=int, default=50, help="documents per turn before the sides swap")
    parser.add_argument("--render-only", type=int, default=200, help="sandbox-only renders on each side")
    args = parser.parse_args()
    configure_logging(level="WARNING")
    page_png = _page_png()
    workdir = Path(tempfile.mkdtemp(prefix="scriptorium-bench-"))
    with _services(workdir) as settings:
        before = WorkerRuntime.build(settings)
        before._render_sandbox = RenderSandbox(settings.prepare, max_documents=1, keep_warm=False)
        after = WorkerRuntime.build(settings)
        after.render_sandbox().prestart()
        sides = [
            Side(BEFORE, before, _store_documents(before, page_png, args.documents)),
            Side(AFTER, after, _store_documents(after, page_png, args.documents)),
        ]
        for start in range(0, args.documents, args.block):
            for side in sides:
                _prepare_block(side, start, args.block)
        _check_prepared(after, [document for side in sides for document in side.documents])
        for side in sides:
            side.runtime.close()
    render_rates = _render_only(page_png, args.render_only)

    print(f"{args.documents} single-page PNG documents (1224 x 1584) per side, one CPU worker path")
    print(f"{'full prepare path (S3, sandbox, routing, Postgres)':<52}{'docs/s':>8}{'ms/doc':>9}")
    for side in sides:
        print(f"  {side.name:<50}{side.rate():>8.1f}{1000 / side.rate():>9.1f}")
        tenth = max(1, len(side.per_document) // 10)
        first, last = side.per_document[:tenth], side.per_document[-tenth:]
        print(
            f"    median {statistics.median(side.per_document) * 1000:.0f} ms/doc; first tenth "
            f"{statistics.median(first) * 1000:.0f}, last tenth {statistics.median(last) * 1000:.0f}"
        )
    ratio = sides[1].rate() / sides[0].rate()
    verdict = "met" if ratio >= TARGET_RATIO else "missed"
    print(f"  ratio after/before: {ratio:.2f}x (target {TARGET_RATIO:.0f}x: {verdict})")
    print(f"{'sandbox alone (the same PNG from local disk)':<52}{'docs/s':>8}{'ms/doc':>9}")
    for name, rate in render_rates.items():
        print(f"  {name:<50}{rate:>8.1f}{1000 / rate:>9.1f}")
    print(f"  ratio after/before: {render_rates[AFTER] / render_rates[BEFORE]:.2f}x")


@contextmanager
def _services(workdir: Path) -> Iterator[Settings]:
    with scratch_services(workdir) as scratch:
        values = {
            **scratch.env,
            "SCRIPTORIUM_LOG__LEVEL": "WARNING",
            # The broker stays full for the whole run (the first 64 pages' messages stay live), as on
            # a fleet working through a backlog: dispatch sends nothing, so its cost does not grow
            # with the backlog, and both sides pay the same admission checks.
            "SCRIPTORIUM_LIMITS__DISPATCH_DEPTH": "64",
            "SCRIPTORIUM_LIMITS__LOST_MESSAGE_AFTER_S": "86400",
        }
        yield settings_from(values)


def _page_png() -> bytes:
    page = next(render_pages(SOURCE_PAGE, Settings(_env_file=None).prepare))  # type: ignore[call-arg]
    buffer = io.BytesIO()
    page.image.save(buffer, format="PNG")
    return buffer.getvalue()


def _store_documents(runtime: WorkerRuntime, page_png: bytes, count: int) -> list[uuid.UUID]:
    runtime.store.ensure_bucket()
    with runtime.sessions.begin() as session:
        tenant = builders.tenant(session).tenant
        documents = []
        for number in range(count):
            document_id = uuid.uuid4()
            key = raw_key(tenant.id, document_id)
            runtime.store.put_bytes(key, page_png, content_type="image/png")
            session.add(
                Document(
                    id=document_id,
                    tenant_id=tenant.id,
                    state=DocumentState.RECEIVED.value,
                    filename=f"scan-{number:05d}.png",
                    size_bytes=len(page_png),
                    sha256=f"{number:064x}",
                    raw_key=key,
                    task="markdown",
                    routing_policy={"mode": "auto"},
                    client_metadata={},
                )
            )
            documents.append(document_id)
    return documents


def _prepare_block(side: Side, start: int, block: int) -> None:
    documents = side.documents[start : start + block]
    started = time.perf_counter()
    for document_id in documents:
        begun = time.perf_counter()
        prepare_document(side.runtime, document_id)
        side.per_document.append(time.perf_counter() - begun)
    side.seconds += time.perf_counter() - started
    side.done += len(documents)


def _check_prepared(runtime: WorkerRuntime, documents: list[uuid.UUID]) -> None:
    """Every document must have gone through: a benchmark of failures would be worthless."""
    with runtime.sessions() as session:
        states = dict(
            session.execute(
                select(Document.state, func.count())
                .where(Document.id.in_(documents))
                .group_by(Document.state)
            ).all()
        )
    if set(states) - {DocumentState.PROCESSING.value, DocumentState.COMPLETED.value}:
        raise SystemExit(f"not every document was prepared: {states}")


def _render_only(page_png: bytes, count: int) -> dict[str, float]:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    rates = {}
    with tempfile.TemporaryDirectory(prefix="scriptorium-bench-") as scratch:
        source = Path(scratch) / "page.png"
        source.write_bytes(page_png)
        sandboxes = {
            BEFORE: RenderSandbox(settings.prepare, max_documents=1, keep_warm=False),
            AFTER: RenderSandbox(settings.prepare),
        }
        for name, sandbox in sandboxes.items():
            with sandbox:
                sandbox.prestart()
                started = time.perf_counter()
                for number in range(count):
                    sandbox.render(source, Path(scratch) / f"{name[:5]}-{number}")
                rates[name] = count / (time.perf_counter() - started)
    return rates


if __name__ == "__main__":
    main()
