"""Postgres restarts under the fleet (an instance of the test's own): nothing lost, nothing spent."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.migrate import upgrade
from scriptorium.db.models import Page
from scriptorium.db.session import make_engine, make_session_factory
from scriptorium.settings import DatabaseSettings
from scriptorium.storage import ObjectStore
from tests.faults.servers import PostgresServer
from tests.support.client import ApiClient, ids
from tests.support.fleet import running_fleet, wait_until
from tests.support.invariants import assert_invariants

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 8  # twice the tests' lease


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    # Not under pytest's tmp_path: its parents are private to root, and Postgres runs as postgres.
    workdir = Path(tempfile.mkdtemp(prefix="scriptorium-faults-pg-"))
    server = PostgresServer(workdir).init()
    server.start()
    try:
        yield server
    finally:
        server.stop("fast")
        shutil.rmtree(workdir, ignore_errors=True)


def test_postgres_restarted_mid_run_loses_nothing_and_costs_no_attempt(
    fault_env: dict[str, str], store: ObjectStore, corpus: Path, tmp_path: Path, own_postgres: PostgresServer
) -> None:
    url = own_postgres.create_database("scriptorium_faults")
    upgrade(url)
    engine = make_engine(DatabaseSettings(url=url))
    sessions: sessionmaker[Session] = make_session_factory(engine)
    try:
        # One page per batch message, so some pages are in every phase when the database goes.
        env = {**fault_env, "SCRIPTORIUM_DB__URL": url, "SCRIPTORIUM_ENGINE__MAX_BATCH_PAGES": "1"}
        with running_fleet(env, tmp_path) as fleet:
            fleet.start_api()
            fleet.start_cpu_worker()
            fleet.start_beat()
            fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_DELAY_S": "1"})
            fleet.supervise()
            client = ApiClient.for_new_tenant(fleet, sessions)
            documents = [
                client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="base", dedup="false")
                for _ in range(2)
            ]
            wait_until(
                lambda: client.document(documents[0]["id"])["pages"].get("done", 0) >= 1,
                timeout=90,
                what="the first page to be read",
                fleet=fleet,
            )
            own_postgres.stop("immediate")  # every connection dies mid-transaction
            time.sleep(OUTAGE_S)
            own_postgres.start()
            for document in documents:
                assert client.wait_terminal(document["id"], timeout=180)["state"] == "completed"
            assert_invariants(sessions, ids(*documents))
            with sessions() as session:
                attempts = session.execute(
                    select(Page.attempts).where(Page.document_id.in_([uuid.UUID(d["id"]) for d in documents]))
                ).scalars()
                assert set(attempts) == {1}, "a database outage is not the pages' attempt"
    finally:
        engine.dispose()
