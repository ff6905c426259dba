"""Keeping a lease alive while long work runs: a thread extends it every third of the lease.

Used by the OCR feed (every page a worker holds) and by preparation (the document being rendered
and routed). The extension is a fenced write the caller supplies; when the database is away the
beat logs and tries again at the next interval, and the holder's own fenced write decides later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from scriptorium.logging import get_logger
from worker.runtime import WorkerRuntime

log = get_logger(__name__)


@contextmanager
def keeping_lease(runtime: WorkerRuntime, extend: Callable[[Session], None], *, name: str) -> Iterator[None]:
    """Run ``extend`` in its own transaction every ``lease_s / 3`` (at least 1 s) while inside."""
    stop = threading.Event()
    interval = max(1.0, runtime.settings.limits.lease_s / 3)

    def beat() -> None:
        while not stop.wait(interval):
            try:
                with runtime.units.committing() as uow:
                    extend(uow.session)
            except Exception as error:
                log.warning("lease.heartbeat_failed", lease=name, error=str(error))

    thread = threading.Thread(target=beat, name=f"lease-keeper-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
