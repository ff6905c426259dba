"""A worker's liveness: exit for the supervisor when the broker is gone or the consumer is wedged.

Celery keeps retrying a lost broker connection for ever, and after some reconnects kombu's Redis
transport stays connected without consuming (celery/celery#8091, #10205). Neither shows from the
outside, so a thread in the worker's main process checks on its own connection:

- the broker answers a PING; no answer for ``liveness_timeout_s`` → exit;
- the worker has nothing reserved or running while its queues hold messages, for
  ``stall_timeout_s`` without receiving one → exit (a consumer that stopped consuming).

Exiting is the repair: compose (``restart: unless-stopped``) starts a fresh process with a fresh
connection; the pages the worker held are handed back first (``exit_worker``). While healthy, the
watchdog touches the liveness file so the container healthcheck (``scriptorium worker-health``)
sees a live process, not a file written once at start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from scriptorium.logging import get_logger
from scriptorium.settings import RedisSettings

log = get_logger(__name__)

EXIT_CODE = 75  # EX_TEMPFAIL: a restart is expected to help
RELEASE_GRACE_S = 5.0  # how long pool children get to hand their claims back before the exit
PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's Redis priority sub-queues
PRIORITY_SEPARATOR = "\x06\x16"


def queue_keys(queues: Sequence[str]) -> list[str]:
    """The Redis lists that hold a queue's messages, one per priority step."""
    return [
        queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}"
        for queue in queues
        for step in PRIORITY_STEPS
    ]


@dataclass
class Observation:
    """What one check saw: whether the broker answered, how many messages wait, whether we are busy."""

    broker_ok: bool
    waiting: int = 0
    busy: bool = False
    error: str = ""


@dataclass
class Verdict:
    """The watchdog's judgement over consecutive observations."""

    liveness_timeout_s: float
    stall_timeout_s: float
    last_broker_ok: float = field(default_factory=time.monotonic)
    stalled_since: float | None = None

    def received(self) -> None:
        self.stalled_since = None

    def judge(self, seen: Observation, now: float) -> str | None:
        """None while healthy, else the reason to exit."""
        if seen.broker_ok:
            self.last_broker_ok = now
        elif now - self.last_broker_ok >= self.liveness_timeout_s:
            return f"the broker has not answered for {now - self.last_broker_ok:.0f} s ({seen.error})"
        if not seen.broker_ok:
            self.stalled_since = None  # the stall clock runs only while the broker answers
            return None
        if seen.busy or seen.waiting == 0:
            self.stalled_since = None
            return None
        if self.stalled_since is None:
            self.stalled_since = now
        if now - self.stalled_since >= self.stall_timeout_s:
            return (
                f"{seen.waiting} messages wait in this worker's queues but it received none "
                f"for {now - self.stalled_since:.0f} s (the consumer stopped consuming)"
            )
        return None

    @property
    def healthy_for_probe(self) -> bool:
        return self.stalled_since is None


class Watchdog:
    """The thread; ``busy`` says whether the worker holds reserved or running tasks."""

    def __init__(
        self,
        settings: RedisSettings,
        queues: Sequence[str],
        *,
        busy: Callable[[], bool],
        liveness_file: Path | None,
        on_exit: Callable[[str], None] | None = None,
    ) -> None:
        self._settings = settings
        self._keys = queue_keys(queues)
        self._busy = busy
        self._liveness_file = liveness_file
        self._on_exit = on_exit or exit_worker
        self._stop = threading.Event()
        self.verdict = Verdict(settings.liveness_timeout_s, settings.stall_timeout_s)
        self._client = redis.Redis.from_url(
            settings.url,
            socket_connect_timeout=min(5.0, settings.watchdog_interval_s * 2),
            socket_timeout=min(5.0, settings.watchdog_interval_s * 2),
        )
        self._thread = threading.Thread(target=self._run, name="broker-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def task_received(self) -> None:
        self.verdict.received()

    def observe(self) -> Observation:
        busy = self._busy()
        try:
            self._client.ping()
            waiting = 0 if busy else sum(int(self._client.llen(key)) for key in self._keys)
        except redis.RedisError as error:
            return Observation(broker_ok=False, busy=busy, error=str(error) or type(error).__name__)
        return Observation(broker_ok=True, waiting=waiting, busy=busy)

    def _run(self) -> None:
        while not self._stop.wait(self._settings.watchdog_interval_s):
            seen = self.observe()
            reason = self.verdict.judge(seen, time.monotonic())
            if reason is not None:
                self._on_exit(reason)
                return
            if seen.broker_ok and self.verdict.healthy_for_probe:
                self._touch()
            elif not seen.broker_ok:
                log.warning(
                    "worker.broker_unreachable",
                    error=seen.error,
                    exits_after_s=self._settings.liveness_timeout_s,
                )

    def _touch(self) -> None:
        if self._liveness_file is not None and self._liveness_file.exists():
            os.utime(self._liveness_file)


def exit_worker(reason: str, *, release_grace_s: float = RELEASE_GRACE_S) -> None:
    """Leave with a non-zero status, pool children too. A child running an OCR task is asked
    first (SIGTERM, see ``worker.cancellation``) to hand its pages back with their attempts
    refunded; what it still holds after ``release_grace_s`` returns by lease."""
    log.critical("worker.watchdog_exit", reason=reason, exit_code=EXIT_CODE)
    from billiard.process import active_children

    children = [child for child in active_children() if child.pid is not None]
    _signal_all(children, signal.SIGTERM)
    deadline = time.monotonic() + release_grace_s
    while time.monotonic() < deadline and any(child.is_alive() for child in children):
        time.sleep(0.1)
    _signal_all(children, signal.SIGKILL)
    os._exit(EXIT_CODE)


def _signal_all(children: Sequence[Any], signum: int) -> None:
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)


def liveness_age(path: Path) -> float | None:
    """Seconds since the liveness file was last touched, or None when it is missing."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
