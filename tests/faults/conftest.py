"""Fixtures of the fault suite: a fleet under a supervisor, and servers the tests may kill."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scriptorium.storage import ObjectStore
from tests.faults.servers import RedisServer
from tests.support.fleet import Fleet, running_fleet

# A worker's watchdog looks every second; the broker gone for 10 s, or a consumer idle beside
# waiting messages for 15 s, makes it exit for the supervisor to restart it.
WATCHDOG_ENV = {
    "SCRIPTORIUM_REDIS__WATCHDOG_INTERVAL_S": "1",
    "SCRIPTORIUM_REDIS__LIVENESS_TIMEOUT_S": "10",
    "SCRIPTORIUM_REDIS__STALL_TIMEOUT_S": "15",
    # A preparation claim of a worker that died is taken over after this (plus the lease).
    "SCRIPTORIUM_PREPARE__RENDER_TIMEOUT_S": "20",
}


@pytest.fixture
def fault_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**env, **WATCHDOG_ENV, "FAKE_ENGINE_EVENTS": str(tmp_path / "events.jsonl")}


@pytest.fixture
def redis_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    persistent = bool(getattr(request, "param", False))
    server = RedisServer(tmp_path / "redis", persistent=persistent).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fleet(fault_env: dict[str, str], store: ObjectStore, tmp_path: Path) -> Iterator[Fleet]:
    """The API and beat (with the sweeper) under test; each test starts the workers it needs."""
    with running_fleet(fault_env, tmp_path) as fleet:
        fleet.start_api()
        fleet.start_beat()
        yield fleet
