"""The object store goes away for longer than a lease: work waits and resumes, no attempt is spent."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document
from scriptorium.settings import StorageSettings
from scriptorium.storage import ObjectStore
from tests.support.client import ApiClient, ids
from tests.support.fleet import Fleet, running_fleet, wait_until
from tests.support.invariants import assert_invariants
from tests.support.rows import pages_of
from tests.support.services import S3Server, seaweedfs

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 10  # longer than the tests' 4 s lease
BUCKET = "scriptorium-outage"


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[S3Server]:
    """An object store of this test's own, to stop and start on the same ports and data."""
    with seaweedfs(tmp_path / "s3") as server:
        ObjectStore(
            StorageSettings(
                endpoint=server.endpoint,
                access_key=server.access_key,
                secret_key=server.secret_key,  # type: ignore[arg-type]
                bucket=BUCKET,
            )
        ).ensure_bucket()
        yield server


@pytest.fixture
def fleet(fault_env: dict[str, str], own_s3: S3Server, tmp_path: Path) -> Iterator[Fleet]:
    env = {
        **fault_env,
        "SCRIPTORIUM_STORAGE__ENDPOINT": own_s3.endpoint,
        # One page per batch message, so pages are still to be fetched when storage goes.
        "SCRIPTORIUM_ENGINE__MAX_BATCH_PAGES": "1",
        "SCRIPTORIUM_STORAGE__BUCKET": BUCKET,
    }
    with running_fleet(env, tmp_path) as fleet:
        fleet.start_api()
        fleet.start_beat()
        yield fleet


def _outage_lines(process_log: str) -> list[dict[str, object]]:
    """The task base's log lines for work put back because storage was unavailable."""
    lines = []
    for line in process_log.splitlines():
        if '"task.waiting_for_dependency"' in line:
            record = json.loads(line)
            if record.get("dependency") == "storage":
                lines.append(record)
    return lines


def test_storage_down_during_ocr_costs_no_attempt(
    fleet: Fleet, own_s3: S3Server, sessions: sessionmaker[Session], corpus: Path
) -> None:
    fleet.start_cpu_worker()
    gpu = fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_DELAY_S": "0.5"})
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="base", dedup="false")
    wait_until(
        lambda: client.document(document["id"])["pages"].get("done", 0) >= 1,
        timeout=90,
        what="the first page to be read",
        fleet=fleet,
    )
    own_s3.stop()
    time.sleep(OUTAGE_S)
    assert client.document(document["id"])["state"] == "processing"  # waiting, not failing
    own_s3.start()
    assert client.wait_terminal(document["id"], timeout=120)["state"] == "completed"
    pages = pages_of(sessions, document["id"])
    assert [page.state for page in pages] == ["done"] * 4
    assert [page.attempts for page in pages] == [1] * 4, "an outage is not the page's attempt"
    waits = _outage_lines(gpu.log())
    assert waits, "the worker said what it waits for"
    assert_invariants(sessions, ids(document))


def test_storage_down_during_preparation_costs_no_attempt(
    fleet: Fleet, own_s3: S3Server, sessions: sessionmaker[Session], corpus: Path
) -> None:
    fleet.start_gpu_worker()
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="base", dedup="false")
    own_s3.stop()
    cpu = fleet.start_cpu_worker()  # finds the upload it must render unreachable
    wait_until(lambda: _outage_lines(cpu.log()), timeout=60, what="prepare to wait", fleet=fleet)
    time.sleep(OUTAGE_S)
    assert client.document(document["id"])["state"] in ("received", "preparing")
    own_s3.start()
    assert client.wait_terminal(document["id"], timeout=120)["state"] == "completed"
    with sessions() as session:
        prepared = session.get(Document, uuid.UUID(document["id"]))
        assert prepared is not None and prepared.prepare_attempts == 1
    assert_invariants(sessions, ids(document))


def test_storage_down_during_upload_refuses_clearly_and_accepts_after(
    fleet: Fleet, own_s3: S3Server, sessions: sessionmaker[Session], corpus: Path
) -> None:
    client = ApiClient.for_new_tenant(fleet, sessions)
    own_s3.stop()
    with (corpus / "pdf-real" / "crazyones.pdf").open("rb") as handle:
        refused = client.http.post("/v1/documents", files={"file": ("crazyones.pdf", handle)})
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] and refused.headers.get("Retry-After")
    own_s3.start()
    fleet.start_cpu_worker()
    fleet.start_gpu_worker()
    document = client.upload(corpus / "pdf-real" / "crazyones.pdf", dedup="false")
    assert client.wait_terminal(document["id"], timeout=90)["state"] == "completed"
    assert_invariants(sessions, ids(document))


def test_storage_down_while_a_result_is_assembled_writes_it_once_storage_returns(
    fleet: Fleet, own_s3: S3Server, sessions: sessionmaker[Session], corpus: Path
) -> None:
    fleet.start_cpu_worker()
    fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_DELAY_S": "4"})
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "crazyones.pdf", mode="base", dedup="false")
    wait_until(
        lambda: client.document(document["id"])["pages"].get("running", 0) == 1,
        timeout=90,
        what="the page to be on the engine (its image already read)",
        fleet=fleet,
    )
    own_s3.stop()  # the page finishes; its assembled files cannot be written
    assert client.wait_terminal(document["id"], timeout=60)["state"] == "completed"
    cpu_log = next(p for p in fleet.processes if p.name == "worker-cpu").log
    wait_until(lambda: _outage_lines(cpu_log()), timeout=60, what="assembly to wait", fleet=fleet)
    # The API answers from the page rows meanwhile.
    assert "Page 1" in client.result_markdown(document["id"]).text
    own_s3.start()

    def assembled() -> bool:
        with sessions() as session:
            row = session.get(Document, uuid.UUID(document["id"]))
            return row is not None and row.result_markdown_key is not None

    wait_until(assembled, timeout=90, what="the assembled files once storage is back", fleet=fleet)
    assert client.page(document["id"], 1)["attempts"] == 1
    assert_invariants(sessions, ids(document))
