"""Cancelling a running task hands its claims back instead of dying with them; stopping a worker
lets its drain end after the batch on the engine.

When a worker loses its broker connection, Celery terminates the late-acknowledged tasks it is
running (``worker_cancel_long_running_tasks_on_connection_loss``) by sending SIGTERM to the pool
process; the watchdog does the same before it exits. Billiard's handler turns SIGTERM into
``SystemExit`` and the pool process ends: a GPU worker loads its model again, and the pages it
held were charged an attempt (the batch on the engine released as if it had failed, others left
to their leases), so a few broker restarts could dead-letter pages that did nothing wrong.

A task declared ``cancellable`` turns that SIGTERM into :class:`TaskCancelled`, raised where the
task is. Its own clean-up releases what it holds with the attempts refunded, and the process
stays, engine and all. Outside such a task, billiard's handler applies (``SystemExit``, the
process goes).

A worker asked to stop (``docker compose stop``: SIGTERM to the main process, Celery's warm
shutdown) waits for its running task, and an OCR task drains for minutes. So the main process
sends :data:`STOP_SIGNAL` to its pool processes as the shutdown begins (:func:`stop_drains`); a
pool process that installed :func:`listen_for_stop` then has :func:`stop_requested` answer True,
and the feed reads no batch after the one on the engine: that one is read and recorded, the one
prefetched is handed back unread, and the worker exits in about one batch time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from scriptorium.errors import DependencyUnavailable

STOP_SIGNAL = signal.SIGUSR2  # free in pool processes: billiard uses SIGUSR1 for soft time limits
_stop = threading.Event()


class TaskCancelled(DependencyUnavailable):
    """The worker cancelled the running task (its broker connection dropped, or it is exiting)."""

    def __init__(self) -> None:
        super().__init__("task_cancelled", "the worker cancelled the task: broker connection lost or exiting")


@contextmanager
def cancellable() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`TaskCancelled` here (once; a second one during the
    clean-up is ignored) instead of ending the process. Outside, the pool's own handler applies.
    Off the main thread, where signals cannot be handled, it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    cancelled = False

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        nonlocal cancelled
        if not cancelled:
            cancelled = True
            raise TaskCancelled()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def listen_for_stop() -> None:
    """In a pool process (main thread, after the fork): note a stop request instead of dying."""
    _stop.clear()
    signal.signal(STOP_SIGNAL, lambda signum, frame: _stop.set())


def stop_requested() -> bool:
    return _stop.is_set()


def stop_drains(**_: Any) -> None:
    """In the worker's main process, as its shutdown begins: ask every pool process to stop
    draining after its current batch (connected to Celery's ``worker_shutting_down``)."""
    from billiard.process import active_children

    for child in active_children():
        if child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, STOP_SIGNAL)
