"""What the fleet benchmarks share: scratch services with the schema in place, the environment
the fleet's processes start with, and the settings read from it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scriptorium.db.migrate import upgrade
from scriptorium.settings import Settings
from tests.conftest import service_env
from tests.support.services import S3Server, postgres_database, redis_database, seaweedfs

ROOT = Path(__file__).resolve().parents[1]

# The settings' production timings, not the tests' short ones (which re-send every message older
# than 6 s and let leases of a few seconds expire on a loaded machine).
PRODUCTION_TIMINGS = {
    "SCRIPTORIUM_LIMITS__LOST_MESSAGE_AFTER_S": "300",
    "SCRIPTORIUM_LIMITS__SWEEP_INTERVAL_S": "15",
    "SCRIPTORIUM_LIMITS__PAGE_SOFT_TIME_LIMIT_S": "500",
    "SCRIPTORIUM_LIMITS__PAGE_HARD_TIME_LIMIT_S": "600",
    "SCRIPTORIUM_REDIS__VISIBILITY_TIMEOUT_S": "3600",
}


@dataclass(frozen=True)
class Scratch:
    env: dict[str, str]  # for the fleet's processes: this process's, the services', the checkout
    s3: S3Server


@contextmanager
def scratch_services(workdir: Path) -> Iterator[Scratch]:
    """A scratch Postgres database (migrated), Redis database and SeaweedFS for one bench run."""
    with postgres_database() as db_url, redis_database() as redis_url, seaweedfs(workdir / "s3") as s3:
        upgrade(db_url)
        services = service_env(db_url, redis_url, s3, "scriptorium-bench")
        yield Scratch({**os.environ, **services, "PYTHONPATH": str(ROOT)}, s3)


def settings_from(env: dict[str, str]) -> Settings:
    """The settings a process started with ``env`` reads (only its ``SCRIPTORIUM_`` variables)."""
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("SCRIPTORIUM_")})
    try:
        return Settings(_env_file=None)  # type: ignore[call-arg]
    finally:
        os.environ.clear()
        os.environ.update(saved)
