"""Shared fixtures: real Postgres, Redis and S3 for the whole session, settings pointing at them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.migrate import upgrade
from scriptorium.db.session import make_engine, make_session_factory
from scriptorium.settings import DatabaseSettings, Settings
from scriptorium.storage import ObjectStore
from scriptorium.unit_of_work import UnitOfWorkFactory
from tests.support.corpus import CHECKOUT, require_corpus
from tests.support.services import S3Server, postgres_database, redis_database, seaweedfs
from tests.support.transactions import rolled_back_connection, savepoint_sessions
from tests.support.units import RecordingSink


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def corpus() -> Path:
    return require_corpus()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_database() as url:
        yield url


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


def service_env(database_url: str, redis_url: str, s3: S3Server, bucket: str) -> dict[str, str]:
    """SCRIPTORIUM_* variables for processes the tests start, with short test timings."""
    return {
        "SCRIPTORIUM_ENVIRONMENT": "test",
        "SCRIPTORIUM_DB__URL": database_url,
        "SCRIPTORIUM_REDIS__URL": redis_url,
        "SCRIPTORIUM_REDIS__VISIBILITY_TIMEOUT_S": "120",
        "SCRIPTORIUM_STORAGE__ENDPOINT": s3.endpoint,
        "SCRIPTORIUM_STORAGE__ACCESS_KEY": s3.access_key,
        "SCRIPTORIUM_STORAGE__SECRET_KEY": s3.secret_key,
        "SCRIPTORIUM_STORAGE__BUCKET": bucket,
        "SCRIPTORIUM_LIMITS__LEASE_S": "4",
        "SCRIPTORIUM_LIMITS__SWEEP_INTERVAL_S": "1",
        "SCRIPTORIUM_LIMITS__LOST_MESSAGE_AFTER_S": "6",
        "SCRIPTORIUM_LIMITS__PAGE_SOFT_TIME_LIMIT_S": "50",
        "SCRIPTORIUM_LIMITS__PAGE_HARD_TIME_LIMIT_S": "60",
        "SCRIPTORIUM_LIMITS__DISPATCH_DEPTH": "16",
        "SCRIPTORIUM_ENGINE__WARMUP": "true",
        "SCRIPTORIUM_LOG__LEVEL": "INFO",
        "SCRIPTORIUM_LOG__JSON_OUTPUT": "true",
    }


@pytest.fixture(scope="session")
def env(database_url: str, redis_url: str, s3_server: S3Server) -> dict[str, str]:
    values = service_env(database_url, redis_url, s3_server, "scriptorium-test")
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTORIUM_")}
    return {**base, **values, "PYTHONPATH": str(CHECKOUT)}


@pytest.fixture(scope="session")
def settings(env: dict[str, str]) -> Settings:
    values = {k: v for k, v in env.items() if k.startswith("SCRIPTORIUM_")}
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        built = Settings(_env_file=None)  # type: ignore[call-arg]
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return built


@pytest.fixture(scope="session")
def store(settings: Settings) -> ObjectStore:
    store = ObjectStore(settings.storage)
    store.ensure_bucket()
    return store


@pytest.fixture(scope="session")
def db_engine(database_url: str) -> Iterator[Engine]:
    """The session's database alone: tests that need nothing else start no S3 server."""
    engine = make_engine(DatabaseSettings(url=database_url))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sessions(db_engine: Engine) -> sessionmaker[Session]:
    """Sessions that commit into the session's database; for tests with worker processes or races."""
    return make_session_factory(db_engine)


@pytest.fixture
def db_connection(db_engine: Engine) -> Iterator[Connection]:
    """The test's connection, inside a transaction rolled back when the test ends."""
    with rolled_back_connection(db_engine) as connection:
        yield connection


@pytest.fixture
def db_sessions(db_connection: Connection) -> sessionmaker[Session]:
    """Like ``sessions``, but every session joins the test's rolled-back transaction (commits are
    savepoints), so nothing the test writes outlives it (tests/support/transactions.py)."""
    return savepoint_sessions(db_connection)


@pytest.fixture
def db_session(db_sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One session in the test's rolled-back transaction."""
    with db_sessions() as session:
        yield session


@pytest.fixture
def db_units(db_sessions: sessionmaker[Session]) -> UnitOfWorkFactory:
    """Units of work in the test's rolled-back transaction: ``commit()`` ends a savepoint and hands
    the messages to a ``RecordingSink`` (``db_units.sink.published``) instead of a broker."""
    return UnitOfWorkFactory(db_sessions, RecordingSink())
