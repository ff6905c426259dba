"""The worker watchdog's judgement: when a worker must exit for its supervisor to restart it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from scriptorium.cli import cli
from scriptorium.settings import RedisSettings
from worker.watchdog import Observation, Verdict, Watchdog, liveness_age, queue_keys


def test_the_priority_sub_queues_are_watched_too() -> None:
    assert queue_keys(["scriptorium.gpu.unlimited-ocr"]) == [
        "scriptorium.gpu.unlimited-ocr",
        "scriptorium.gpu.unlimited-ocr\x06\x163",
        "scriptorium.gpu.unlimited-ocr\x06\x166",
        "scriptorium.gpu.unlimited-ocr\x06\x169",
    ]


def test_a_broker_that_stays_away_past_the_liveness_timeout_ends_the_worker() -> None:
    verdict = Verdict(liveness_timeout_s=10, stall_timeout_s=100)
    assert verdict.judge(Observation(broker_ok=True), now=0) is None
    assert verdict.judge(Observation(broker_ok=False, error="refused"), now=5) is None
    assert verdict.judge(Observation(broker_ok=True), now=9) is None  # it came back in time
    assert verdict.judge(Observation(broker_ok=False, error="refused"), now=18) is None
    reason = verdict.judge(Observation(broker_ok=False, error="refused"), now=19.5)
    assert reason is not None and "not answered for 10 s" in reason and "refused" in reason


def test_an_idle_worker_beside_waiting_messages_is_a_wedged_consumer() -> None:
    verdict = Verdict(liveness_timeout_s=10, stall_timeout_s=15)
    assert verdict.judge(Observation(broker_ok=True, waiting=3), now=0) is None
    assert not verdict.healthy_for_probe
    assert verdict.judge(Observation(broker_ok=True, waiting=3), now=14) is None
    reason = verdict.judge(Observation(broker_ok=True, waiting=3), now=15)
    assert reason is not None and "stopped consuming" in reason


@pytest.mark.parametrize(
    "interruption",
    [
        Observation(broker_ok=True, waiting=0),  # another worker took the messages
        Observation(broker_ok=True, waiting=3, busy=True),  # this worker is working
    ],
)
def test_progress_resets_the_stall_clock(interruption: Observation) -> None:
    verdict = Verdict(liveness_timeout_s=10, stall_timeout_s=15)
    verdict.judge(Observation(broker_ok=True, waiting=3), now=0)
    verdict.judge(interruption, now=10)
    assert verdict.healthy_for_probe
    assert verdict.judge(Observation(broker_ok=True, waiting=3), now=20) is None
    assert verdict.judge(Observation(broker_ok=True, waiting=3), now=34) is None


def test_receiving_a_message_resets_the_stall_clock() -> None:
    verdict = Verdict(liveness_timeout_s=10, stall_timeout_s=15)
    verdict.judge(Observation(broker_ok=True, waiting=3), now=0)
    verdict.received()
    assert verdict.judge(Observation(broker_ok=True, waiting=3), now=14) is None
    assert verdict.judge(Observation(broker_ok=True, waiting=3), now=28) is None


def test_the_watchdog_touches_the_liveness_file_while_the_real_broker_answers(
    redis_url: str, tmp_path: Path
) -> None:
    alive = tmp_path / "ready"
    alive.write_text("worker")
    old = time.time() - 300
    os.utime(alive, (old, old))
    exits: list[str] = []
    settings = RedisSettings(url=redis_url, watchdog_interval_s=0.2, liveness_timeout_s=5, stall_timeout_s=5)
    watchdog = Watchdog(
        settings, ["scriptorium.test-none"], busy=lambda: False, liveness_file=alive, on_exit=exits.append
    )
    watchdog.start()
    try:
        deadline = time.monotonic() + 5
        while (liveness_age(alive) or 999) > 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        watchdog.stop()
    assert (liveness_age(alive) or 999) < 2 and exits == []


def test_the_watchdog_gives_up_on_an_unreachable_broker(tmp_path: Path) -> None:
    from tests.support.services import free_port

    exits: list[str] = []
    settings = RedisSettings(
        url=f"redis://127.0.0.1:{free_port()}/0",
        watchdog_interval_s=0.1,
        liveness_timeout_s=1,
        stall_timeout_s=5,
    )
    watchdog = Watchdog(settings, ["q"], busy=lambda: False, liveness_file=None, on_exit=exits.append)
    watchdog.start()
    deadline = time.monotonic() + 10
    while not exits and time.monotonic() < deadline:
        time.sleep(0.1)
    watchdog.stop()
    assert exits and "has not answered" in exits[0]


def test_worker_health_reads_the_liveness_file(tmp_path: Path) -> None:
    alive = tmp_path / "ready"

    def health(*arguments: str) -> int:
        return CliRunner().invoke(cli, ["worker-health", str(alive), *arguments]).exit_code

    assert health() == 1  # not ready yet
    alive.write_text("worker")
    assert health("--max-age-s", "30") == 0
    old = time.time() - 120
    os.utime(alive, (old, old))
    assert health("--max-age-s", "30") == 1  # wedged: nobody touches it
