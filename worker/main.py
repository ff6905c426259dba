"""Process entry points: the Celery worker (CPU or GPU queues) and beat.

A GPU worker serves one model family and consumes that family's queue only: ``--queues gpu``
means the queue of the family it serves, which is ``engine.family`` or, when unset, the family
of the checkpoint at ``engine.model_path`` (read from its config.json before Celery starts). The
family is then pinned, so the engine refuses to load a checkpoint of another one.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import signals

from scriptorium.logging import configure_logging, get_logger
from scriptorium.model_families import ModelFamily
from scriptorium.queueing import CPU_QUEUE, GPU_QUEUES, create_celery, gpu_queue
from scriptorium.settings import Settings
from worker.app import create_worker_app
from worker.cancellation import stop_drains
from worker.engine.base import Engine
from worker.engine.profiles import identify_checkpoint_directory
from worker.metrics_server import start_worker_exporter
from worker.runtime import EngineFactory
from worker.sweep_loop import SweepLoop
from worker.watchdog import Watchdog

log = get_logger(__name__)

CPU_ALIAS = "cpu"
GPU_ALIAS = "gpu"
FamilyResolver = Callable[[Settings], ModelFamily]


def load_deepseek_engine(settings: Settings) -> Engine:
    """The product's engine: DeepSeek-OCR, loaded once per worker process."""
    from worker.engine.deepseek.engine import DeepSeekOcrEngine

    return DeepSeekOcrEngine(settings.engine)


def _keep_our_logging(settings: Settings) -> None:
    """Configure structlog and stop Celery from installing its own log handlers."""
    configure_logging(level=settings.log.level, json_output=settings.json_logs)

    def _configured(**_: Any) -> None:
        configure_logging(level=settings.log.level, json_output=settings.json_logs)

    signals.setup_logging.connect(_configured, weak=False)


def checkpoint_family(settings: Settings) -> ModelFamily:
    """The family this GPU worker serves: ``engine.family``, else its checkpoint's (config.json)."""
    if settings.engine.family is not None:
        return settings.engine.family
    from worker.engine.deepseek.checkpoint import resolve_model_path

    return identify_checkpoint_directory(resolve_model_path(settings.engine.model_path)).family


def serves_gpu(names: list[str]) -> bool:
    return any(name == GPU_ALIAS or name in GPU_QUEUES for name in names)


def resolve_queues(names: list[str], family: ModelFamily | None = None) -> list[str]:
    """The queues named by ``names``: ``cpu`` and ``gpu`` (the queue of ``family``) or queue names.
    A GPU worker consumes its own family's queue only."""
    resolved: list[str] = []
    for name in names:
        if name == CPU_ALIAS:
            resolved.append(CPU_QUEUE)
        elif name == GPU_ALIAS or name in GPU_QUEUES:
            if family is None:
                raise ValueError("a GPU queue needs the model family the worker serves")
            if name != GPU_ALIAS and name != gpu_queue(family):
                raise ValueError(f"queue {name} carries another family's pages; this worker serves {family}")
            resolved.append(gpu_queue(family))
        else:
            resolved.append(name)
    return list(dict.fromkeys(resolved))


def run_worker(
    settings: Settings,
    *,
    queues: list[str],
    concurrency: int,
    hostname: str | None = None,
    engine_factory: EngineFactory = load_deepseek_engine,
    family_of: FamilyResolver = checkpoint_family,
    ready_file: Path | None = None,
) -> None:
    _keep_our_logging(settings)
    gpu = serves_gpu(queues)
    family: ModelFamily | None = None
    if gpu:
        try:
            family = family_of(settings)
        except Exception as error:  # no checkpoint, or not one of a served family: nothing to serve
            log.critical("worker.no_model_family", model_path=settings.engine.model_path, error=str(error))
            raise SystemExit(f"cannot tell which model family this GPU worker serves: {error}") from error
        settings = settings.model_copy(
            update={"engine": settings.engine.model_copy(update={"family": family})}
        )
    resolved = resolve_queues(queues, family)
    app = create_worker_app(settings, engine_factory=engine_factory if gpu else None, ready_file=ready_file)
    kind = "gpu" if gpu else "cpu"
    log.info("worker.queues", queues=resolved, model=family)
    start_worker_exporter(settings.metrics)
    _watch_broker(settings, resolved, ready_file)
    signals.worker_shutting_down.connect(stop_drains, weak=False)
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(resolved),
            "--concurrency",
            str(1 if gpu else concurrency),
            "--pool",
            "prefork",
            "--hostname",
            hostname or f"{kind}@{socket.gethostname()}",
            "--loglevel",
            settings.log.level,
            "--without-mingle",
            "--without-gossip",
        ]
    )


def _watch_broker(settings: Settings, queues: list[str], liveness_file: Path | None) -> None:
    """Start the watchdog in the main process once the consumer is up (see worker.watchdog)."""
    from celery.worker import state

    watchdog = Watchdog(
        settings.redis,
        queues,
        busy=lambda: bool(state.active_requests or state.reserved_requests),
        liveness_file=liveness_file,
    )

    def _ready(**_: Any) -> None:
        watchdog.start()

    def _received(**_: Any) -> None:
        watchdog.task_received()

    signals.worker_ready.connect(_ready, weak=False)
    signals.task_received.connect(_received, weak=False)


def run_beat(settings: Settings, *, liveness_file: Path | None = None) -> None:
    """Celery beat for the periodic messages, and the sweeper loop beside it (no broker needed)."""
    _keep_our_logging(settings)
    SweepLoop(settings, liveness_file=liveness_file).start()
    app = create_celery(settings)
    schedule = Path(tempfile.gettempdir()) / "scriptorium-beat-schedule"
    app.start(["beat", "--loglevel", settings.log.level, "--schedule", str(schedule)])
