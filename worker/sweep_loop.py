"""The sweeper's own loop, run in the beat process and driven from the database alone.

The sweep once ran as a task on the CPU queue, so a broker outage or a wedged CPU worker stopped
the very thing that repairs them. Here it needs only Postgres: each pass takes the advisory lock
(one sweeper repairs at a time, however many run), repairs, and publishes what it re-dispatches;
a publish that fails leaves the rows as they are and the next pass sends them again. While the
database is away the loop waits with a growing delay and says so.

After each pass it also looks at which model families have queued pages but no live GPU worker
(``scriptorium.gpu_workers``) and logs when a family starts waiting and when it is served again.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from scriptorium.gpu_workers import pages_waiting_for_model
from scriptorium.logging import get_logger
from scriptorium.settings import Settings
from worker.runtime import WorkerRuntime
from worker.sweeper import run_sweep
from worker.task_base import dependency_of, is_transient

log = get_logger(__name__)

MAX_BACKOFF_S = 30.0


class SweepLoop:
    def __init__(self, settings: Settings, *, liveness_file: Path | None = None) -> None:
        self._settings = settings
        self._liveness_file = liveness_file
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper", daemon=True)
        self._runtime: WorkerRuntime | None = None
        self._model_waits = ModelWaits()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        interval = self._settings.limits.sweep_interval_s
        lease_s = self._settings.limits.lease_s
        delay = interval
        failures = 0
        grace_until = 0.0
        log.info("sweeper.started", interval_s=interval)
        while not self._stop.wait(delay):
            try:
                if self._runtime is None:
                    self._runtime = WorkerRuntime.build(self._settings)
                # After an outage, leases that ran out meanwhile belong to workers that could not
                # extend them; give those one lease to do so before taking their pages away.
                grace = lease_s if time.monotonic() < grace_until else 0
                if run_sweep(self._runtime, lease_grace_s=grace) is not None:
                    self._model_waits.observe(self._runtime)
            except Exception as error:  # a pass that fails must not end the loop
                failures += 1
                delay = min(MAX_BACKOFF_S, interval * 2**failures)
                if not is_transient(error):
                    log.exception("sweeper.failed", retry_in_s=round(delay, 1), failures=failures)
                else:
                    log.warning(
                        "sweeper.waiting",
                        dependency=dependency_of(error),
                        error=(str(error).splitlines() or [type(error).__name__])[0][:300],
                        retry_in_s=round(delay, 1),
                        failures=failures,
                    )
                continue
            if failures:
                log.info("sweeper.resumed", after_failures=failures, lease_grace_s=lease_s)
                grace_until = time.monotonic() + lease_s + interval
            failures = 0
            delay = interval
            self._touch()

    def _touch(self) -> None:
        if self._liveness_file is None:
            return
        self._liveness_file.parent.mkdir(parents=True, exist_ok=True)
        self._liveness_file.touch()
        os.utime(self._liveness_file)


class ModelWaits:
    """Which families waited for a worker at the last look; logs each change once."""

    def __init__(self) -> None:
        self.waiting: dict[str, int] = {}

    def observe(self, runtime: WorkerRuntime) -> dict[str, int]:
        """Look again; returns the families waiting now with their queued pages."""
        with runtime.sessions() as session:
            counts = pages_waiting_for_model(
                session, gone_after_s=runtime.settings.limits.gpu_worker_gone_after_s
            )
        now = {model: count for model, count in counts.items() if count}
        for model in sorted(now.keys() - self.waiting.keys()):
            log.warning("model.waiting_for_worker", model=model, queued_pages=now[model])
        for model in sorted(self.waiting.keys() - now.keys()):
            log.info("model.no_longer_waiting", model=model)  # a worker serves it, or nothing is queued
        self.waiting = now
        return now
