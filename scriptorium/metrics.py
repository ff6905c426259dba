"""Prometheus metrics: what the workers count, and the backlog the API reads from Postgres.

Worker metrics live in :data:`REGISTRY`, not the client's global one, so a process exports only
what it owns. Celery runs tasks in forked pool processes; with ``PROMETHEUS_MULTIPROC_DIR`` set
before this module is imported, every pool process writes its values to that directory and the
worker's exporter (``worker.metrics_server``) adds them up. Gauges say how values of several
processes combine (``multiprocess_mode``); the ``live*`` modes drop processes that have exited.

The backlog (queue depth, age of the oldest waiting page, pages waiting for a worker of their
model family) is read from Postgres when Prometheus scrapes the API, because Postgres, not the
broker, knows what is waiting.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, Page
from scriptorium.gpu_workers import pages_waiting_for_model
from scriptorium.logging import get_logger
from scriptorium.model_families import MODEL_FAMILY_NAMES
from scriptorium.states import DocumentState, PageState

log = get_logger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

# Engine runs take from a fraction of a second (tiny) to minutes (gundam on a busy GPU).
ENGINE_SECONDS_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# A page's time in the OCR step also covers escalations, storage and a shared batch.
PAGE_SECONDS_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 1200.0)

PAGES = Counter(
    "scriptorium_pages",
    "Pages the OCR step finished, by the mode of the kept result and how it ended",
    ["mode", "outcome"],
    registry=REGISTRY,
)
PAGE_SECONDS = Histogram(
    "scriptorium_page_seconds",
    "Seconds from claiming a page to recording its result, every engine run included",
    ["mode"],
    buckets=PAGE_SECONDS_BUCKETS,
    registry=REGISTRY,
)
ENGINE_RUNS = Counter(
    "scriptorium_engine_runs",
    "Engine runs of a page (escalations are extra runs), by the mode it was read at",
    ["mode"],
    registry=REGISTRY,
)
ENGINE_SECONDS = Histogram(
    "scriptorium_engine_seconds",
    "Engine seconds of one run of one page (its share of a batch), by mode",
    ["mode"],
    buckets=ENGINE_SECONDS_BUCKETS,
    registry=REGISTRY,
)
VISION_TOKENS = Counter(
    "scriptorium_vision_tokens",
    "Vision tokens (encoder features) of every engine run, by mode",
    ["mode"],
    registry=REGISTRY,
)
OUTPUT_TOKENS = Counter(
    "scriptorium_output_tokens",
    "Generated text tokens of every engine run, by mode",
    ["mode"],
    registry=REGISTRY,
)
ESCALATIONS = Counter(
    "scriptorium_escalations",
    "Pages read again one mode up because the output showed they were under-read",
    ["from_mode", "to_mode"],
    registry=REGISTRY,
)
DOCUMENTS_PREPARED = Counter(
    "scriptorium_documents_prepared",
    "Documents the prepare step finished: prepared, or rejected with a reason code",
    ["outcome", "reason"],
    registry=REGISTRY,
)
PAGES_ROUTED = Counter(
    "scriptorium_pages_routed",
    "Pages routed by the prepare step, by planned mode (skipped: blank, no GPU work)",
    ["mode"],
    registry=REGISTRY,
)
MODEL_LOAD_SECONDS = Gauge(
    "scriptorium_model_load_seconds",
    "Seconds the resident engine took to load its checkpoint onto the device",
    registry=REGISTRY,
    multiprocess_mode="livemostrecent",
)
MODEL_WARMUP_SECONDS = Gauge(
    "scriptorium_model_warmup_seconds",
    "Seconds the engine's warm-up page took",
    registry=REGISTRY,
    multiprocess_mode="livemostrecent",
)
ENGINES_READY = Gauge(
    "scriptorium_engines_ready",
    "Engines loaded, warmed up and serving in this worker",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
DEVICE_MEMORY = Gauge(
    "scriptorium_gpu_memory_bytes",
    "Device memory of the resident engine: allocated, reserved, peak_allocated and total",
    ["kind"],
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
ENGINE_BUSY_SECONDS = Counter(
    "scriptorium_engine_busy_seconds",
    "Seconds the engine spent reading batches; its rate over wall time is the GPU's duty cycle",
    registry=REGISTRY,
)
ENGINE_BATCH_PAGES = Histogram(
    "scriptorium_engine_batch_pages",
    "Pages per engine batch",
    buckets=(1, 2, 4, 8, 16, 32, 64),
    registry=REGISTRY,
)
DEPENDENCY_WAITS = Counter(
    "scriptorium_dependency_waits",
    "Tasks put back to retry later because a dependency was down, by dependency and task",
    ["dependency", "task"],
    registry=REGISTRY,
)

SKIPPED_MODE = "skipped"


class PageOutcomeLabel:
    DONE = "done"
    UNDER_READ = "under_read"
    FAILED = "failed"
    LEASE_LOST = "lease_lost"


@runtime_checkable
class ReportsDeviceMemory(Protocol):
    def memory_stats(self) -> Mapping[str, int]:
        """Device memory in bytes by kind; empty when the engine runs on the CPU."""
        ...


def page_outcome(state: str, *, under_read: bool, recorded: bool) -> str:
    """The ``outcome`` label of a page the OCR step finished with."""
    if not recorded:
        return PageOutcomeLabel.LEASE_LOST
    if state != PageState.DONE:
        return PageOutcomeLabel.FAILED
    return PageOutcomeLabel.UNDER_READ if under_read else PageOutcomeLabel.DONE


def observe_engine_run(mode: str, *, vision_tokens: int, output_tokens: int, seconds: float) -> None:
    ENGINE_RUNS.labels(mode=mode).inc()
    ENGINE_SECONDS.labels(mode=mode).observe(seconds)
    VISION_TOKENS.labels(mode=mode).inc(vision_tokens)
    OUTPUT_TOKENS.labels(mode=mode).inc(output_tokens)


def count_escalation(from_mode: str, to_mode: str) -> None:
    ESCALATIONS.labels(from_mode=from_mode, to_mode=to_mode).inc()


def count_page(mode: str, outcome: str, *, seconds: float) -> None:
    PAGES.labels(mode=mode, outcome=outcome).inc()
    PAGE_SECONDS.labels(mode=mode).observe(seconds)


def count_prepared(outcome: str, *, reason: str = "", page_modes: Iterable[str | None] = ()) -> None:
    DOCUMENTS_PREPARED.labels(outcome=outcome, reason=reason).inc()
    for mode in page_modes:
        PAGES_ROUTED.labels(mode=mode or SKIPPED_MODE).inc()


def observe_engine_batch(seconds: float, *, pages: int) -> None:
    ENGINE_BUSY_SECONDS.inc(seconds)
    ENGINE_BATCH_PAGES.observe(pages)


def count_dependency_wait(dependency: str, task: str) -> None:
    DEPENDENCY_WAITS.labels(dependency=dependency, task=task).inc()


def record_engine_ready(engine: object, *, load_seconds: float, warmup_seconds: float) -> None:
    MODEL_LOAD_SECONDS.set(load_seconds)
    MODEL_WARMUP_SECONDS.set(warmup_seconds)
    ENGINES_READY.set(1)
    record_device_memory(engine)


def record_device_memory(engine: object) -> None:
    """Publish the engine's device memory, when it reports any (CUDA engines do)."""
    if not isinstance(engine, ReportsDeviceMemory):
        return
    for kind, value in engine.memory_stats().items():
        DEVICE_MEMORY.labels(kind=kind.removesuffix("_bytes")).set(value)


# --- the backlog, from Postgres -------------------------------------------------------------

GPU_QUEUE_LABEL = "gpu"  # pages waiting for an OCR worker
CPU_QUEUE_LABEL = "cpu"  # documents waiting for the prepare step
BACKLOG_STATEMENT_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class Backlog:
    queued_pages_by_mode: dict[str, int] = field(default_factory=dict)
    oldest_queued_page_age_s: float = 0.0
    running_pages: int = 0
    waiting_documents: int = 0  # received, not yet picked up by the prepare step
    oldest_waiting_document_age_s: float = 0.0
    preparing_documents: int = 0
    # Queued pages per model family that no live GPU worker serves (scriptorium.gpu_workers).
    pages_waiting_for_model: dict[str, int] = field(default_factory=dict)

    @property
    def queued_pages(self) -> int:
        return sum(self.queued_pages_by_mode.values())


def read_backlog(session: Session, *, gone_after_s: float) -> Backlog:
    """What waits for the workers, in a few index-backed queries under a short statement timeout;
    a GPU worker silent for ``gone_after_s`` does not count as serving its family."""
    session.execute(text(f"SET LOCAL statement_timeout = {BACKLOG_STATEMENT_TIMEOUT_MS}"))
    age = func.coalesce(func.extract("epoch", func.now() - func.min(Page.created_at)), 0)
    queued = session.execute(
        select(Page.planned_mode, func.count(), age)
        .where(Page.state == PageState.QUEUED)
        .group_by(Page.planned_mode)
    ).all()
    running = session.execute(
        select(func.count()).select_from(Page).where(Page.state == PageState.RUNNING)
    ).scalar_one()
    document_age = func.coalesce(func.extract("epoch", func.now() - func.min(Document.created_at)), 0)
    documents = {
        state: (count, float(oldest))
        for state, count, oldest in session.execute(
            select(Document.state, func.count(), document_age)
            .where(Document.state.in_([DocumentState.RECEIVED, DocumentState.PREPARING]))
            .group_by(Document.state)
        ).all()
    }
    waiting, waiting_age = documents.get(DocumentState.RECEIVED, (0, 0.0))
    preparing, _ = documents.get(DocumentState.PREPARING, (0, 0.0))
    return Backlog(
        queued_pages_by_mode={str(mode): count for mode, count, _ in queued},
        oldest_queued_page_age_s=max((float(oldest) for _, _, oldest in queued), default=0.0),
        running_pages=running,
        waiting_documents=waiting,
        oldest_waiting_document_age_s=waiting_age,
        preparing_documents=preparing,
        pages_waiting_for_model={
            model: count
            for model, count in pages_waiting_for_model(session, gone_after_s=gone_after_s).items()
            if count
        },
    )


class BacklogCollector(Collector):
    """Reads the backlog at scrape time; reports ``scriptorium_backlog_up 0`` when it cannot."""

    def __init__(self, sessions: sessionmaker[Session], *, gone_after_s: float) -> None:
        self._sessions = sessions
        self._gone_after_s = gone_after_s

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog = self._read()
        up = GaugeMetricFamily("scriptorium_backlog_up", "Whether the backlog could be read from Postgres")
        up.add_metric([], 0 if backlog is None else 1)
        yield up
        if backlog is None:
            return
        yield from backlog_families(backlog)

    def _read(self) -> Backlog | None:
        try:
            with self._sessions() as session, session.begin():
                return read_backlog(session, gone_after_s=self._gone_after_s)
        except Exception as error:  # the database is away: say so in the scrape, do not fail it
            log.warning("metrics.backlog_unavailable", error=str(error))
            return None


def backlog_families(backlog: Backlog) -> Iterator[GaugeMetricFamily]:
    depth = GaugeMetricFamily(
        "scriptorium_queue_depth",
        "Work waiting in Postgres: queued pages (gpu) and received documents (cpu)",
        labels=["queue"],
    )
    depth.add_metric([GPU_QUEUE_LABEL], backlog.queued_pages)
    depth.add_metric([CPU_QUEUE_LABEL], backlog.waiting_documents)
    yield depth
    oldest = GaugeMetricFamily(
        "scriptorium_queue_oldest_age_seconds",
        "Age of the oldest waiting item: queued page (gpu) or received document (cpu); 0 when none",
        labels=["queue"],
    )
    oldest.add_metric([GPU_QUEUE_LABEL], backlog.oldest_queued_page_age_s)
    oldest.add_metric([CPU_QUEUE_LABEL], backlog.oldest_waiting_document_age_s)
    yield oldest
    by_mode = GaugeMetricFamily(
        "scriptorium_pages_queued", "Queued pages by the mode they were routed to", labels=["mode"]
    )
    for mode, count in sorted(backlog.queued_pages_by_mode.items()):
        by_mode.add_metric([mode], count)
    yield by_mode
    yield GaugeMetricFamily(
        "scriptorium_pages_running", "Pages claimed by an OCR worker right now", value=backlog.running_pages
    )
    yield GaugeMetricFamily(
        "scriptorium_documents_preparing",
        "Documents being rasterised and routed right now",
        value=backlog.preparing_documents,
    )
    waiting = GaugeMetricFamily(
        "scriptorium_pages_waiting_for_model",
        "Queued pages of a model family no live GPU worker serves (0 while one does)",
        labels=["model"],
    )
    for model in MODEL_FAMILY_NAMES:
        waiting.add_metric([model], backlog.pages_waiting_for_model.get(model, 0))
    yield waiting


def backlog_registry(sessions: sessionmaker[Session], *, gone_after_s: float) -> CollectorRegistry:
    """A registry holding only the backlog collector (built per scrape by the API)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BacklogCollector(sessions, gone_after_s=gone_after_s))
    return registry
