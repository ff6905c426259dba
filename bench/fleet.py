"""Fleet overhead per page and the engine's duty cycle, measured side by side in one run.

Starts real services (a scratch Postgres database, a Redis database, SeaweedFS) and the fleet's
real processes, then drains two sets of prepared pages with one GPU worker each time:

1. a zero-cost engine; the same engine is then called in a plain loop over the same page images.
   The difference per page is what the fleet costs: claims, leases, storage reads, result writes,
   accounting, dispatch. Target: at most 10 ms per page at batch 8.
2. an engine that takes a fixed time per batch (default 250 ms for 8 pages, a GPU stand-in).
   The fleet's page rate over the engine-bound rate is the duty cycle. Target: at least 95%.

The last line has a fixed form so runs can be compared:
``fleet overhead <X> ms/page; duty cycle <Y>%``.

    .venv/bin/python -m bench.fleet [--documents 25] [--batch 8] [--engine-batch-s 0.25]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bench.services import PRODUCTION_TIMINGS, scratch_services, settings_from
from scriptorium.db.models import Page
from scriptorium.db.session import make_engine, make_session_factory
from scriptorium.modes import Mode
from scriptorium.settings import Settings
from scriptorium.storage import ObjectStore
from tests.support import builders
from tests.support.client import ApiClient
from tests.support.corpus import corpus_path
from tests.support.deterministic_engine import DeterministicEngine
from tests.support.fleet import Fleet, running_fleet
from tests.support.services import wait_for
from worker.engine.base import PageInput
from worker.prepare.render import render_pages

SAMPLE = corpus_path("pdf-real", "normal_4pages.pdf")
TARGET_MS = 10.0
TARGET_DUTY = 95.0


def rasterise(settings: Settings) -> tuple[float, float]:
    """Pages per second and median ms per page rendering the pdf-real corpus at 144 dpi."""
    timings = []
    for pdf in sorted(corpus_path("pdf-real").glob("*.pdf")):
        started = time.perf_counter()
        for _ in render_pages(pdf, settings.prepare):
            now = time.perf_counter()
            timings.append(now - started)
            started = now
    return len(timings) / sum(timings), statistics.median(timings) * 1000


def plain_loop(settings: Settings, store: ObjectStore, keys: list[str], batch: int) -> float:
    """Seconds for the engine alone over the same pages, images read from storage."""
    engine = DeterministicEngine(settings)
    started = time.perf_counter()
    for start in range(0, len(keys), batch):
        inputs = []
        for offset, key in enumerate(keys[start : start + batch]):
            with Image.open(io.BytesIO(store.get_bytes(key))) as image:
                inputs.append(
                    PageInput(page_no=start + offset + 1, image=image.convert("RGB"), mode=Mode.TINY)
                )
        engine.run(inputs)
    return time.perf_counter() - started


def drain(
    fleet: Fleet,
    client: ApiClient,
    sessions: sessionmaker[Session],
    *,
    documents: int,
    name: str,
    engine_env: dict[str, str],
) -> tuple[int, float, list[str]]:
    """Upload and prepare ``documents`` copies of the sample, then let one GPU worker drain them.

    Returns the pages, the seconds from the worker's readiness to the last document's end, and the
    page image keys (for the plain loop).
    """
    ids = [client.upload(SAMPLE, mode="tiny", dedup="false")["id"] for _ in range(documents)]
    total = 4 * len(ids)

    def prepared() -> bool:
        with sessions() as session:
            count = session.execute(
                select(func.count()).select_from(Page).where(Page.document_id.in_(ids))
            ).scalar_one()
        return int(count) == total

    wait_for(prepared, timeout=1200, interval=0.5, what="pages to be prepared")
    ready = fleet.workdir / f"{name}.ready"
    worker = fleet.start_gpu_worker(
        name, engine_env={**engine_env, "SCRIPTORIUM_LOG__LEVEL": "INFO"}, wait_ready=False
    )
    wait_for(ready.exists, timeout=180, interval=0.01, what="the GPU worker")
    started = time.perf_counter()
    for document_id in ids:
        client.wait_terminal(document_id, timeout=1200)
    seconds = time.perf_counter() - started
    worker.stop()
    with sessions() as session:
        keys = list(
            session.execute(
                select(Page.image_key)
                .where(Page.document_id.in_(ids))
                .order_by(Page.document_id, Page.page_no)
            ).scalars()
        )
    return total, seconds, keys


STAGES = ("engine_s", "engine_waited_s", "claim_s", "load_s", "record_s")


def feed_breakdown(log_path: Path) -> dict[str, float]:
    """Per-batch milliseconds of each stage, summed over the GPU worker's ``feed.drained`` lines."""
    totals = dict.fromkeys((*STAGES, "batches"), 0.0)
    for line in log_path.read_text(errors="replace").splitlines():
        if '"feed.drained"' not in line:
            continue
        event = json.loads(line)
        for key in totals:
            totals[key] += float(event.get(key, 0))
    batches = totals.pop("batches") or 1.0
    return {stage: 1000 * seconds / batches for stage, seconds in totals.items()}


def engine_span(events: Path, batch_s: float) -> float:
    """Seconds from the engine's first call to the end of its last, from the test engine's page
    events (each stamped while its call runs; a call lasts ``batch_s``)."""
    stamps = [json.loads(line)["at"] for line in events.read_text().splitlines() if line.strip()]
    return float(max(stamps) - min(stamps)) + batch_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=25, help="copies of a 4-page PDF per run")
    parser.add_argument("--batch", type=int, default=8, help="pages per engine call (engine.max_batch_pages)")
    parser.add_argument(
        "--engine-batch-s", type=float, default=0.25, help="seconds per engine call in the duty-cycle run"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="scriptorium-bench-"))
    with scratch_services(workdir) as scratch:
        env = {
            **scratch.env,
            **PRODUCTION_TIMINGS,
            "SCRIPTORIUM_LOG__LEVEL": "WARNING",
            "SCRIPTORIUM_LIMITS__DISPATCH_DEPTH": "64",
            "SCRIPTORIUM_LIMITS__LEASE_S": "60",
            "SCRIPTORIUM_ENGINE__MAX_BATCH_PAGES": str(args.batch),
        }
        settings = settings_from(env)
        store = ObjectStore(settings.storage)
        store.ensure_bucket()
        database = make_engine(settings.db)
        sessions = make_session_factory(database)
        with running_fleet(env, workdir) as fleet:
            fleet.start_api()
            fleet.start_cpu_worker()
            fleet.start_beat()
            with sessions.begin() as session:
                key = builders.tenant(session).key
            client = ApiClient(fleet, key)
            total, fleet_seconds, keys = drain(
                fleet, client, sessions, documents=args.documents, name="gpu-zero-cost", engine_env={}
            )
            timed_total, timed_seconds, _ = drain(
                fleet,
                client,
                sessions,
                documents=args.documents,
                name="gpu-timed",
                engine_env={
                    "FAKE_ENGINE_BATCH_DELAY_S": str(args.engine_batch_s),
                    "FAKE_ENGINE_EVENTS": str(workdir / "gpu-timed.events"),
                },
            )
            breakdown = feed_breakdown(workdir / "gpu-timed.log")
            steady_seconds = engine_span(workdir / "gpu-timed.events", args.engine_batch_s)
        loop_seconds = plain_loop(settings, store, keys, args.batch)
        raster_rate, raster_median = rasterise(settings)
        database.dispose()

    report(
        Figures(
            documents=args.documents,
            batch=args.batch,
            engine_batch_s=args.engine_batch_s,
            total=total,
            fleet_seconds=fleet_seconds,
            loop_seconds=loop_seconds,
            timed_total=timed_total,
            timed_seconds=timed_seconds,
            steady_seconds=steady_seconds,
            raster_rate=raster_rate,
            raster_median=raster_median,
            breakdown=breakdown,
        )
    )


@dataclass(frozen=True)
class Figures:
    documents: int
    batch: int
    engine_batch_s: float
    total: int
    fleet_seconds: float
    loop_seconds: float
    timed_total: int
    timed_seconds: float
    steady_seconds: float
    raster_rate: float
    raster_median: float
    breakdown: dict[str, float]


def report(f: Figures) -> None:
    fleet_rate = f.total / f.fleet_seconds
    overhead_ms = (f.fleet_seconds - f.loop_seconds) / f.total * 1000
    engine_bound_rate = f.batch / f.engine_batch_s
    timed_rate = f.timed_total / f.timed_seconds
    duty = 100 * timed_rate / engine_bound_rate
    steady_duty = 100 * (f.timed_total / f.steady_seconds) / engine_bound_rate
    print(f"pages: {f.total} per run ({f.documents} documents), engine batch {f.batch}")
    print(f"{'':44}{'pages/s':>10}{'ms/page':>10}")
    print(f"{'fleet, zero-cost engine':44}{fleet_rate:>10.1f}{1000 / fleet_rate:>10.2f}")
    loop_rate = f.total / f.loop_seconds
    print(f"{'same engine, plain loop':44}{loop_rate:>10.1f}{1000 / loop_rate:>10.2f}")
    label = f"fleet, engine {f.engine_batch_s * 1000:.0f} ms per batch"
    print(f"{label:44}{timed_rate:>10.1f}{1000 / timed_rate:>10.2f}")
    print(
        f"{'that engine alone (engine-bound)':44}{engine_bound_rate:>10.1f}{1000 / engine_bound_rate:>10.2f}"
    )
    print(f"{'rasterise pdf-real @144 dpi':44}{f.raster_rate:>10.1f}{f.raster_median:>10.2f}  (median)")
    busy = f.breakdown["engine_s"] / ((f.breakdown["engine_s"] + f.breakdown["engine_waited_s"]) or 1.0)
    print(f"engine busy while the GPU worker drained: {100 * busy:.1f}% of its time")
    print(
        f"duty cycle from the engine's first call to its last: {steady_duty:.1f}% "
        f"(the headline figure adds the worker's start and the last document's assembly: "
        f"{f.timed_seconds - f.steady_seconds:.2f} s)"
    )
    print("where a batch's time went in the timed run (ms per batch):")
    print("  engine  engine idle | claim ahead  load images (prefetch thread) | record (record thread)")
    ms = f.breakdown
    print(
        f"  {ms['engine_s']:6.0f}  {ms['engine_waited_s']:11.0f} | {ms['claim_s']:11.0f}"
        f"  {ms['load_s']:29.0f} | {ms['record_s']:22.0f}"
    )
    overhead_verdict = "meets" if overhead_ms <= TARGET_MS else "misses"
    duty_verdict = "meets" if duty >= TARGET_DUTY else "misses"
    print(
        f"targets: overhead ≤ {TARGET_MS:.0f} ms/page ({overhead_verdict}), "
        f"duty cycle ≥ {TARGET_DUTY:.0f}% ({duty_verdict})"
    )
    print(f"fleet overhead {overhead_ms:.2f} ms/page; duty cycle {duty:.1f}%")


if __name__ == "__main__":
    main()
