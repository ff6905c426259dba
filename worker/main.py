"""Process entry points: the Celery worker (CPU or GPU queues) and beat."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any

from celery import signals

from scriptorium.logging import configure_logging
from scriptorium.queueing import CPU_QUEUE, GPU_QUEUE, create_celery
from scriptorium.settings import Settings
from worker.app import create_worker_app
from worker.engine.base import Engine
from worker.metrics_server import start_worker_exporter
from worker.runtime import EngineFactory
from worker.sweep_loop import SweepLoop
from worker.watchdog import Watchdog

QUEUE_ALIASES = {"cpu": CPU_QUEUE, "gpu": GPU_QUEUE}


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


def resolve_queues(names: list[str]) -> list[str]:
    return [QUEUE_ALIASES.get(name, name) for name in names]


def run_worker(
    settings: Settings,
    *,
    queues: list[str],
    concurrency: int,
    hostname: str | None = None,
    engine_factory: EngineFactory = load_deepseek_engine,
    ready_file: Path | None = None,
) -> None:
    _keep_our_logging(settings)
    resolved = resolve_queues(queues)
    serves_gpu = GPU_QUEUE in resolved
    app = create_worker_app(
        settings, engine_factory=engine_factory if serves_gpu else None, ready_file=ready_file
    )
    kind = "gpu" if serves_gpu else "cpu"
    start_worker_exporter(settings.metrics)
    _watch_broker(settings, resolved, ready_file)
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(resolved),
            "--concurrency",
            str(1 if serves_gpu else concurrency),
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
