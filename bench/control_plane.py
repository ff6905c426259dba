"""Control-plane capacity: how many pages per second one Postgres and one Redis can feed.

Starts real services (a scratch Postgres database, a Redis database, SeaweedFS), a CPU worker
(sweeps, assembly) and beat, then for each N of a short ladder starts N GPU workers with the
zero-cost deterministic engine and lets them drain a fresh backlog. Everything on the GPU side is
the product's path: the dispatcher's first messages and its refill after every batch, claims
under leases, the lease heartbeat, page images read from S3, recording in one transaction per
batch with the ledger, terminal transitions, and the sweeper. Only preparation is skipped: page
rows are inserted the way the test builders do (``tests/support/builders.document_with_pages``),
routed to ``tiny``, with a small PNG at each page's ``image_key``.

Per rung it reports:

- pages/s: recorded pages (``pages.finished_at``) between the 10th and the 90th percentile of
  the rung's finish times, so worker start-up and the drain's tail are left out;
- p95 claim-to-record latency per page, from the GPU workers' JSON logs: the time of the
  ``batch.claimed`` / ``batch.prefetched`` line that claimed a page to its ``page.recorded``
  line (a worker claims and records its batches in order, so lines pair up first in, first out);
- CPU seconds per 1000 pages of the Postgres backends serving the bench database (``/proc``
  utime + stime of the backends listed in ``pg_stat_activity``, sampled twice a second; the
  server's shared background processes are not counted), of the GPU workers (Celery parent and
  pool child), of SeaweedFS, and of the CPU worker and beat;
- a check that nothing was lost or read twice: every page ``done`` with one attempt, one usage
  ledger row per page, and the DESIGN.md invariants (``tests/support/invariants.py``).

Saturation is the first rung that no later rung (more workers) beats by more than ``--gain``
(10%); the figure is the best rate up to it. On a development VM the workers, Postgres,
Redis and S3 share the same cores, so the figure is a lower bound of what one control plane
feeds. The last line has a fixed form: ``control plane saturates at <N> pages/s``.

    .venv/bin/python -m bench.control_plane [--ladder 1,2,4,8] [--pages 960] [--batch 8]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image, ImageDraw
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from bench.services import PRODUCTION_TIMINGS, scratch_services, settings_from
from scriptorium.db.models import Document, Page, Tenant, UsageEntry
from scriptorium.db.session import make_engine, make_session_factory
from scriptorium.dispatch import admit_and_dispatch
from scriptorium.queueing import Publisher, create_celery
from scriptorium.settings import Settings
from scriptorium.states import TERMINAL_DOCUMENT_STATES, PageState
from scriptorium.storage import ObjectStore
from scriptorium.unit_of_work import UnitOfWork
from tests.support import builders
from tests.support.fleet import Fleet, ManagedProcess, running_fleet
from tests.support.invariants import assert_invariants
from tests.support.services import wait_for

TICKS = os.sysconf("SC_CLK_TCK")
CLAIM_EVENTS = ("batch.claimed", "batch.prefetched")
RECORD_EVENTS = ("page.recorded", "page.lease_lost")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(process: ManagedProcess) -> float:
    return sum(cpu_seconds(pid) or 0.0 for pid in [process.pid, *process.children()])


class BackendSampler:
    """CPU of the Postgres backends connected to one database, sampled until stopped.

    Each backend's CPU is counted from its first sighting (or from zero when it was born during
    the run) to its last; a backend that ends between two samples loses at most half a second.
    """

    def __init__(self, sessions: sessionmaker[Session], interval: float = 0.5) -> None:
        self.sessions = sessions
        self.interval = interval
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = False

    def _backends(self) -> list[int]:
        with self.sessions() as session:
            return list(
                session.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalars()
            )

    def _sample(self) -> None:
        for pid in self._backends():
            seconds = cpu_seconds(pid)
            if seconds is None:
                continue
            self.first.setdefault(pid, seconds if not self._started else 0.0)
            self.last[pid] = seconds

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        self._sample()
        self._started = True
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


@dataclass
class Rung:
    workers: int
    pages: int
    pages_per_s: float
    p50_ms: float
    p95_ms: float
    postgres_cpu_s: float
    postgres_backends: int  # connections to the bench database seen during the rung
    workers_cpu_s: float
    s3_cpu_s: float
    cpu_worker_cpu_s: float
    machine_busy: float  # share of all cores busy during the rung, every process on the machine


def page_png(page_no: int) -> bytes:
    """A small page image: a few lines of dark marks on white, different per page number."""
    image = Image.new("L", (320, 414), 255)
    draw = ImageDraw.Draw(image)
    for line in range(12):
        draw.rectangle((24, 30 + line * 30, 24 + (page_no * 37 + line * 53) % 260, 42 + line * 30), fill=20)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def log_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def claim_to_record_ms(logs: dict[Path, int]) -> list[float]:
    """Per recorded page, ms from the log line of the claim that took it to its ``page.recorded``.

    ``logs`` maps each worker's log file to the offset where this rung's lines start.
    """
    latencies: list[float] = []
    for path, offset in logs.items():
        pending: list[datetime] = []
        with path.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        for line in lines:
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            event = entry.get("event")
            if event in CLAIM_EVENTS:
                pending.extend([datetime.fromisoformat(entry["timestamp"])] * int(entry["batch"]))
            elif event == "page.released":
                raise RuntimeError(f"{path.name}: a batch was released mid-run; claims no longer pair up")
            elif event in RECORD_EVENTS and "page_no" in entry:  # not the heartbeat's batch-wide line
                claimed = pending.pop(0)
                recorded = datetime.fromisoformat(entry["timestamp"])
                latencies.append((recorded - claimed).total_seconds() * 1000)
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def steady_rate(finished: list[datetime]) -> float:
    """Pages/s between the 10th and 90th percentile finish times."""
    ordered = sorted(finished)
    low, high = len(ordered) // 10, (len(ordered) * 9) // 10 - 1
    span = (ordered[high] - ordered[low]).total_seconds()
    return (high - low) / span if span > 0 else float("nan")


def create_backlog(
    sessions: sessionmaker[Session],
    publisher: Publisher,
    tenants: list[Tenant],
    *,
    documents: int,
    pages_per_document: int,
    settings: Settings,
) -> list[uuid.UUID]:
    """Queued, routed pages in several tenants' documents, then the dispatcher's first messages.

    The tables are analysed between the two, as autovacuum does on a running system: without
    statistics for freshly inserted pages the planner picks plans that make every dispatch and
    claim take seconds (see docs/BENCHMARKS.md), which is a different question from capacity.
    """
    with UnitOfWork(sessions(), publisher) as units:
        ids = [
            builders.document_with_pages(
                units.session,
                tenants[index % len(tenants)],
                pages=pages_per_document,
                mode="tiny",
                dispatched=False,
                request_id=f"bench-{uuid.uuid4().hex[:12]}",
            ).id
            for index in range(documents)
        ]
        units.commit()
    with sessions() as session:
        session.execute(text("ANALYZE pages, documents"))
        session.commit()
    limits = settings.limits
    with UnitOfWork(sessions(), publisher) as units:
        admit_and_dispatch(
            units,
            depth=limits.dispatch_depth,
            lost_after_s=limits.lost_message_after_s,
            batch_pages=settings.engine.max_batch_pages,
        )
        units.commit()
    return ids


def run_rung(
    fleet: Fleet,
    gpu_workers: list[ManagedProcess],
    *,
    sessions: sessionmaker[Session],
    publisher: Publisher,
    tenants: list[Tenant],
    settings: Settings,
    s3_pid: int,
    workers: int,
    documents: int,
    pages_per_document: int,
) -> Rung:
    """Grow the GPU workers to ``workers`` (they stay for the next rung), then drain a new backlog."""
    names = [f"worker-gpu-{index}" for index in range(len(gpu_workers), workers)]
    gpu_workers.extend(fleet.start_gpu_worker(name, wait_ready=False) for name in names)
    ready = [fleet.workdir / f"{name}.ready" for name in names]
    wait_for(lambda: all(path.exists() for path in ready), timeout=600, interval=0.2, what="GPU workers")
    started = list(gpu_workers)
    logs = {p.log_path: log_size(p.log_path) for p in started}
    cpu_workers = [p for p in fleet.processes if p.name in ("worker-cpu", "beat")]
    before_workers = sum(tree_cpu_seconds(p) for p in started)
    before_s3 = cpu_seconds(s3_pid) or 0.0
    before_cpu = sum(tree_cpu_seconds(p) for p in cpu_workers)
    before_machine = machine_busy_ticks()
    sampler = BackendSampler(sessions)
    sampler.start()

    ids = create_backlog(
        sessions,
        publisher,
        tenants,
        documents=documents,
        pages_per_document=pages_per_document,
        settings=settings,
    )
    total = documents * pages_per_document

    def drained() -> bool:
        with sessions() as session:
            open_documents = session.execute(
                select(func.count())
                .select_from(Document)
                .where(Document.id.in_(ids), Document.state.not_in(TERMINAL_DOCUMENT_STATES))
            ).scalar_one()
        return int(open_documents) == 0

    wait_for(drained, timeout=900, interval=0.5, what=f"{total} pages read by {workers} GPU workers")
    postgres_cpu = sampler.stop()
    workers_cpu = sum(tree_cpu_seconds(p) for p in started) - before_workers
    s3_cpu = (cpu_seconds(s3_pid) or 0.0) - before_s3
    cpu_worker_cpu = sum(tree_cpu_seconds(p) for p in cpu_workers) - before_cpu
    after_machine = machine_busy_ticks()

    with sessions() as session:
        pages = list(session.execute(select(Page).where(Page.document_id.in_(ids))).scalars())
        ledger = session.execute(
            select(func.count()).select_from(UsageEntry).where(UsageEntry.document_id.in_(ids))
        ).scalar_one()
    not_done = [(p.document_id, p.page_no, p.state) for p in pages if p.state != PageState.DONE]
    read_twice = [(p.document_id, p.page_no, p.attempts) for p in pages if p.attempts != 1]
    assert len(pages) == total, f"{total - len(pages)} pages missing"
    assert not not_done, f"pages not done: {not_done[:5]}"
    assert not read_twice, f"pages read more than once: {read_twice[:5]}"
    assert ledger == total, f"{ledger} usage ledger rows for {total} pages"
    assert_invariants(sessions, ids)

    latencies = claim_to_record_ms(logs)
    assert len(latencies) == total, f"{len(latencies)} page.recorded log lines for {total} pages"
    busy = after_machine[0] - before_machine[0]
    return Rung(
        workers=workers,
        pages=total,
        pages_per_s=steady_rate([p.finished_at for p in pages if p.finished_at is not None]),
        p50_ms=statistics.median(latencies),
        p95_ms=percentile(latencies, 0.95),
        postgres_cpu_s=postgres_cpu,
        postgres_backends=len(sampler.last),
        workers_cpu_s=workers_cpu,
        s3_cpu_s=s3_cpu,
        cpu_worker_cpu_s=cpu_worker_cpu,
        machine_busy=busy / max(1, after_machine[1] - before_machine[1]),
    )


def saturation(rungs: list[Rung], gain: float) -> tuple[Rung, bool]:
    """The best rung up to the first one no later rung beats by ``gain``; whether the ladder got there.

    Comparing with every later rung, not only the next, keeps one noisy rung on a shared machine
    from being taken for the saturation point.
    """
    for index, current in enumerate(rungs[:-1]):
        if max(r.pages_per_s for r in rungs[index + 1 :]) < current.pages_per_s * (1 + gain):
            return max(rungs[: index + 1], key=lambda r: r.pages_per_s), True
    return max(rungs, key=lambda r: r.pages_per_s), False


def print_table(rungs: list[Rung]) -> None:
    header = (
        f"{'GPU workers':>11}{'pages':>7}{'pages/s':>9}{'p50 ms':>8}{'p95 ms':>8}"
        f"{'PG cpu s':>9}{'PG conns':>9}{'PG ms/pg':>9}{'wkr ms/pg':>10}{'S3 ms/pg':>9}{'cpu-wkr ms/pg':>14}"
        f"{'machine busy':>13}"
    )
    print(header)
    for r in rungs:
        per_page = 1000 / r.pages
        print(
            f"{r.workers:>11}{r.pages:>7}{r.pages_per_s:>9.1f}{r.p50_ms:>8.0f}{r.p95_ms:>8.0f}"
            f"{r.postgres_cpu_s:>9.1f}{r.postgres_backends:>9}{r.postgres_cpu_s * per_page:>9.2f}"
            f"{r.workers_cpu_s * per_page:>10.2f}{r.s3_cpu_s * per_page:>9.2f}"
            f"{r.cpu_worker_cpu_s * per_page:>14.2f}{r.machine_busy:>12.0%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ladder", default="1,2,4,8", help="GPU worker counts, in rising order")
    parser.add_argument("--pages", type=int, default=960, help="pages per rung")
    parser.add_argument("--pages-per-document", type=int, default=40)
    parser.add_argument("--tenants", type=int, default=4, help="tenants the documents are spread over")
    parser.add_argument("--batch", type=int, default=8, help="pages per engine call (engine.max_batch_pages)")
    parser.add_argument("--gain", type=float, default=0.10, help="smallest rise in pages/s that counts")
    args = parser.parse_args()
    ladder = [int(n) for n in args.ladder.split(",")]
    documents = max(1, args.pages // args.pages_per_document)
    workdir = Path(tempfile.mkdtemp(prefix="scriptorium-bench-"))
    with scratch_services(workdir) as scratch:
        env = {
            **scratch.env,
            **PRODUCTION_TIMINGS,
            "SCRIPTORIUM_LIMITS__LEASE_S": "120",
            "SCRIPTORIUM_LIMITS__DISPATCH_DEPTH": "64",
            "SCRIPTORIUM_ENGINE__MAX_BATCH_PAGES": str(args.batch),
        }
        settings = settings_from(env)
        store = ObjectStore(settings.storage)
        store.ensure_bucket()
        for page_no in range(1, args.pages_per_document + 1):
            store.put_bytes(f"img/{page_no}", page_png(page_no), content_type="image/png")
        database = make_engine(settings.db)
        sessions = make_session_factory(database)
        publisher = Publisher(create_celery(settings))
        with sessions.begin() as session:
            tenant_ids = [builders.tenant(session).tenant.id for _ in range(args.tenants)]
        with sessions() as session:
            tenants = [session.get_one(Tenant, tenant_id) for tenant_id in tenant_ids]
            session.expunge_all()
        rungs = []
        gpu_workers: list[ManagedProcess] = []
        with running_fleet(env, workdir) as fleet:
            fleet.start_cpu_worker()
            fleet.start_beat()
            for workers in ladder:
                rung = run_rung(
                    fleet,
                    gpu_workers,
                    sessions=sessions,
                    publisher=publisher,
                    tenants=tenants,
                    settings=settings,
                    s3_pid=scratch.s3.process.pid,
                    workers=workers,
                    documents=documents,
                    pages_per_document=args.pages_per_document,
                )
                rungs.append(rung)
                print(
                    f"{workers} GPU workers: {rung.pages_per_s:.1f} pages/s, p95 {rung.p95_ms:.0f} ms "
                    "(every page done once, ledger = pages, invariants hold)",
                    flush=True,
                )
        database.dispose()

    cores = os.cpu_count()
    pages = documents * args.pages_per_document
    print(
        f"\nzero-cost engine, engine batch {args.batch}, {pages} pages per rung "
        f"({documents} documents over {args.tenants} tenants); workers, Postgres, Redis and S3 share "
        f"this machine's {cores} cores, so these rates are a lower bound of what one control plane feeds"
    )
    print_table(rungs)
    print(
        "PG conns: backends connected to the bench database during the rung (the bench's own included); "
        "ms/pg: CPU ms per page of the Postgres backends of the bench database, the GPU workers, "
        "SeaweedFS, and the CPU worker + beat; latency from the workers' batch.claimed/prefetched "
        "to page.recorded log lines"
    )
    peak, saturated = saturation(rungs, args.gain)
    if not saturated:
        print(
            f"no saturation within the ladder: pages/s still rose by ≥{args.gain:.0%} at {rungs[-1].workers}"
        )
    print(f"control plane saturates at {peak.pages_per_s:.0f} pages/s")


if __name__ == "__main__":
    main()
