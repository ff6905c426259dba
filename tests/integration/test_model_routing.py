"""Two model families on real processes: each family's pages reach only its own GPU workers, a
family without a live worker waits visibly, and its pages flow once a worker of it starts.

The API of this branch has no ``model`` upload option yet, so the test sets ``documents.model``
in the database while the documents wait to be prepared (no CPU worker runs until then).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, GpuWorker, Page
from scriptorium.storage import ObjectStore
from tests.support.client import ApiClient
from tests.support.fleet import Fleet, running_fleet, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEEPSEEK = "deepseek-ocr"
UNLIMITED = "unlimited-ocr"
FAST_LIVENESS = {
    "SCRIPTORIUM_LIMITS__GPU_HEARTBEAT_S": "1",
    "SCRIPTORIUM_LIMITS__GPU_WORKER_GONE_AFTER_S": "4",
    "SCRIPTORIUM_LIMITS__SWEEP_INTERVAL_S": "1",
}


@pytest.fixture(scope="module")
def fleet(
    env: dict[str, str], store: ObjectStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    with running_fleet({**env, **FAST_LIVENESS}, tmp_path_factory.mktemp("fleet")) as fleet:
        fleet.start_api()
        fleet.start_beat()
        yield fleet


def _waiting_gauge(fleet: Fleet) -> dict[str, float]:
    text = httpx.get(f"{fleet.api_url}/metrics", timeout=10).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return {s.labels["model"]: s.value for s in families["scriptorium_pages_waiting_for_model"].samples}


def _beat_log(fleet: Fleet) -> str:
    return next(process for process in fleet.processes if process.name == "beat").log()


def _readers(sessions: sessionmaker[Session], document_id: str) -> list[tuple[str | None, str | None]]:
    """For each page of a document: the family recorded with it, and the family its reader serves."""
    with sessions() as session:
        rows = session.execute(
            select(Page.model, GpuWorker.model)
            .join(GpuWorker, GpuWorker.identity == Page.lease_owner, isouter=True)
            .where(Page.document_id == uuid.UUID(document_id), Page.state == "done")
        ).all()
    return [(recorded, reader) for recorded, reader in rows]


def test_each_family_is_read_by_its_own_workers_and_a_family_without_one_waits_visibly(
    fleet: Fleet, corpus: Path, sessions: sessionmaker[Session]
) -> None:
    client = ApiClient.for_new_tenant(fleet, sessions)
    pdf = corpus / "pdf-real" / "normal_4pages.pdf"
    deepseek = client.upload(pdf, pages="1-2")
    unlimited = client.upload(pdf, pages="3-4")
    with sessions.begin() as session:
        session.execute(
            update(Document).where(Document.id == uuid.UUID(unlimited["id"])).values(model=UNLIMITED)
        )
    fleet.start_cpu_worker()
    fleet.start_gpu_worker("gpu-unlimited", engine_env={"SCRIPTORIUM_ENGINE__FAMILY": UNLIMITED})

    assert client.wait_terminal(unlimited["id"])["state"] == "completed"
    assert _readers(sessions, unlimited["id"]) == [(UNLIMITED, UNLIMITED)] * 2

    waiting = wait_until(
        lambda: (body := client.document(deepseek["id"]))["waiting"] and body,
        timeout=60,
        what="the deepseek-ocr document to say it waits",
        fleet=fleet,
    )
    assert waiting["state"] == "processing"
    assert waiting["waiting"] == {"reason": "no_worker_for_model", "model": DEEPSEEK}
    assert client.document(unlimited["id"])["waiting"] is None
    gauge = wait_until(
        lambda: (values := _waiting_gauge(fleet))[DEEPSEEK] > 0 and values,
        timeout=30,
        what="the waiting gauge",
        fleet=fleet,
    )
    assert gauge == {DEEPSEEK: waiting["pages"].get("queued", 0), UNLIMITED: 0}
    wait_until(lambda: "model.waiting_for_worker" in _beat_log(fleet), timeout=30, what="the sweeper's log")

    fleet.start_gpu_worker("gpu-deepseek")
    finished = client.wait_terminal(deepseek["id"])
    assert finished["state"] == "completed" and finished["waiting"] is None
    assert _readers(sessions, deepseek["id"]) == [(DEEPSEEK, DEEPSEEK)] * 2
    assert _waiting_gauge(fleet) == {DEEPSEEK: 0, UNLIMITED: 0}
    wait_until(lambda: "model.no_longer_waiting" in _beat_log(fleet), timeout=30, what="the sweeper's log")


def test_a_worker_that_stops_cleanly_takes_its_heartbeat_row_with_it(
    fleet: Fleet, sessions: sessionmaker[Session]
) -> None:
    worker = fleet.start_gpu_worker("gpu-leaving", engine_env={"SCRIPTORIUM_ENGINE__FAMILY": UNLIMITED})

    def rows() -> list[GpuWorker]:
        with sessions() as session:
            children = {str(pid) for pid in worker.children()}
            return [
                row
                for row in session.execute(select(GpuWorker)).scalars()
                if row.identity.rsplit(":", 1)[-1] in children
            ]

    announced = wait_until(rows, timeout=30, what="the worker's heartbeat row")
    assert [row.model for row in announced] == [UNLIMITED]
    identity = announced[0].identity
    first_seen = announced[0].last_seen_at
    wait_until(
        lambda: _last_seen(sessions, identity) > first_seen, timeout=15, what="the heartbeat to move on"
    )
    worker.stop()
    with sessions() as session:
        assert session.get(GpuWorker, identity) is None


def _last_seen(sessions: sessionmaker[Session], identity: str) -> datetime:
    with sessions() as session:
        row = session.get(GpuWorker, identity)
        assert row is not None
        return row.last_seen_at
