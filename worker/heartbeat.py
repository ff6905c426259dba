"""A GPU worker process's heartbeat: its ``gpu_workers`` row, kept fresh while it is alive.

Started once the engine is loaded and warmed up, a daemon thread touches the row every
``limits.gpu_heartbeat_s``; a clean shutdown deletes it. A process that dies leaves a row that
stops being touched, and after ``limits.gpu_worker_gone_after_s`` it no longer counts
(``scriptorium.gpu_workers``). A database outage only delays beats: each one is an upsert.
"""

from __future__ import annotations

import threading

from scriptorium.gpu_workers import record_heartbeat, retire
from scriptorium.logging import get_logger
from scriptorium.unit_of_work import UnitOfWorkFactory

log = get_logger(__name__)


class Heartbeat:
    def __init__(
        self, units: UnitOfWorkFactory, *, identity: str, model: str, model_revision: str, interval_s: float
    ) -> None:
        self.identity = identity
        self.model = model
        self._units = units
        self._model_revision = model_revision
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-heartbeat", daemon=True)

    def start(self) -> None:
        """Write the row now (the worker serves from this moment), then keep it fresh."""
        self.beat()
        self._thread.start()
        log.info("gpu_worker.announced", identity=self.identity, model=self.model)

    def beat(self) -> None:
        with self._units.committing() as uow:
            record_heartbeat(
                uow.session, identity=self.identity, model=self.model, model_revision=self._model_revision
            )

    def stop(self) -> None:
        """Stop beating and delete the row (a clean shutdown)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            with self._units.committing() as uow:
                retire(uow.session, self.identity)
        except Exception as error:  # the database is away: the row goes stale and stops counting
            log.warning("gpu_worker.retire_failed", identity=self.identity, error=str(error))
            return
        log.info("gpu_worker.retired", identity=self.identity, model=self.model)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.beat()
            except Exception as error:
                log.warning("gpu_worker.heartbeat_failed", identity=self.identity, error=str(error))
