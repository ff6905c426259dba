"""The worker's Prometheus exporter: one endpoint adding up the metrics of every pool process.

Celery forks the processes that run tasks. In the client's multiprocess mode, chosen by
``PROMETHEUS_MULTIPROC_DIR`` being in the environment before the process starts, each of them
writes its values to a file in that directory, and the exporter, a thread in the worker's main
process, merges the files when Prometheus scrapes. The directory is emptied at start so that a
restarted worker does not report values of its previous life, and the ``live*`` gauges of pool
processes that have exited (a crash, a replaced child) are dropped before each scrape.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Metric, start_http_server, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from scriptorium.logging import get_logger
from scriptorium.settings import MetricsSettings

log = get_logger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class WorkerExporter:
    port: int
    directory: Path
    server: WSGIServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LiveProcessCollector(Collector):
    """The merged metrics of the directory, without the live gauges of exited processes."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._merged = MultiProcessCollector(None, path=str(directory))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        for pid in exited_processes(self._directory):
            mark_process_dead(pid, path=str(self._directory))  # type: ignore[no-untyped-call]
        merged: Iterable[Metric] = self._merged.collect()  # type: ignore[no-untyped-call]
        return merged


def multiprocess_directory() -> Path | None:
    value = os.environ.get(MULTIPROCESS_ENV, "")
    return Path(value) if value else None


def values_are_shared() -> bool:
    """Whether this process writes metric values to the directory (decided when the client loads)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def reset_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def exited_processes(directory: Path) -> list[int]:
    """Processes that left live gauges behind and no longer run."""
    pids = set()
    for path in directory.glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            pids.add(int(pid))
    return sorted(pids)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def start_worker_exporter(settings: MetricsSettings, *, host: str = "0.0.0.0") -> WorkerExporter | None:  # noqa: S104
    """Serve the merged metrics on ``settings.worker_port``; a worker without them still works."""
    if settings.worker_port <= 0:
        log.info("metrics.exporter_off", why="SCRIPTORIUM_METRICS__WORKER_PORT is 0")
        return None
    directory = multiprocess_directory()
    if directory is None or not values_are_shared():
        log.warning(
            "metrics.exporter_off",
            why=f"{MULTIPROCESS_ENV} must be set in the environment before the worker starts",
        )
        return None
    reset_directory(directory)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveProcessCollector(directory))
    try:
        server, thread = start_http_server(settings.worker_port, addr=host, registry=registry)
    except OSError as error:
        log.warning("metrics.exporter_failed", port=settings.worker_port, error=str(error))
        return None
    log.info("metrics.exporter_started", port=settings.worker_port, directory=str(directory))
    return WorkerExporter(port=settings.worker_port, directory=directory, server=server, thread=thread)
