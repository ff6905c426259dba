"""Workers die: SIGKILL mid-batch, mid-prepare and mid-intake; a pool child lost; a poison page."""

from __future__ import annotations

import io
import os
import signal
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document
from tests.integration.batches.conftest import png
from tests.support.client import ApiClient, ids
from tests.support.fleet import Fleet, ManagedProcess, wait_until
from tests.support.invariants import assert_invariants
from tests.support.rows import pages_of

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]


def _four_pages_on_the_engine(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> tuple[ManagedProcess, ApiClient, dict[str, Any]]:
    """A GPU worker reading a 4-page document as one batch (2 s a page), caught in the middle."""
    fleet.start_cpu_worker()
    worker = fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_DELAY_S": "2"})
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="base")
    wait_until(
        lambda: client.document(document["id"])["pages"].get("running", 0) == 4,
        timeout=60,
        what="the four pages to be on the engine as one batch",
        fleet=fleet,
    )
    return worker, client, document


def test_a_gpu_worker_killed_mid_batch_leaves_every_page_done_exactly_once(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    worker, client, document = _four_pages_on_the_engine(fleet, sessions, corpus)
    worker.kill_group(signal.SIGKILL)  # the whole worker: main process and the pool child
    fleet.start_gpu_worker("worker-gpu-2")
    assert client.wait_terminal(document["id"], timeout=120)["state"] == "completed"
    for page in pages_of(sessions, document["id"]):
        assert page.state == "done" and page.attempts == 2 and len(page.ocr_attempts) == 1
    assert_invariants(sessions, ids(document))


def test_a_pool_child_cancelled_mid_batch_hands_its_pages_back_and_keeps_its_engine(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    """What Celery does to a running task when the broker connection drops (SIGTERM to the child)."""
    worker, client, document = _four_pages_on_the_engine(fleet, sessions, corpus)
    [child] = worker.children()
    os.kill(child, signal.SIGTERM)
    assert client.wait_terminal(document["id"], timeout=120)["state"] == "completed"
    for page in pages_of(sessions, document["id"]):  # the cancelled read cost no attempt
        assert page.state == "done" and page.attempts == 1 and len(page.ocr_attempts) == 1
    assert worker.children() == [child], "the pool process (and its engine) should have stayed"
    assert "task.cancelled" in worker.log()
    assert_invariants(sessions, ids(document))


def test_a_pool_child_killed_mid_page_is_retried_at_once(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path, tmp_path: Path
) -> None:
    fleet.start_cpu_worker()
    once = tmp_path / "crashed-once"
    fleet.start_gpu_worker(
        engine_env={"FAKE_ENGINE_CRASH_PAGES": "2", "FAKE_ENGINE_CRASH_ONCE_FILE": str(once)}
    )
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="base")
    finished = client.wait_terminal(document["id"], timeout=120)
    assert once.exists()
    assert finished["state"] == "completed"
    assert_invariants(sessions, ids(document))


def test_a_poison_page_is_dead_lettered_and_the_document_is_partial(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    fleet.start_cpu_worker()
    fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_CRASH_PAGES": "3"})
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="base")
    finished = client.wait_terminal(document["id"], timeout=180)
    assert finished["state"] == "partial"
    dead = client.page(document["id"], 3)
    assert dead["state"] == "dead" and dead["error"]["code"] == "attempts_exhausted"
    assert [p.state for p in pages_of(sessions, document["id"])] == ["done", "done", "dead", "done"]
    result = client.result_json(document["id"])
    assert result["failed_pages"] == [3]
    markdown = client.result_markdown(document["id"])
    assert markdown.headers["X-Failed-Pages"] == "3"
    assert_invariants(sessions, ids(document))


def test_a_cpu_worker_killed_mid_prepare_is_taken_over(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    cpu = fleet.start_cpu_worker()
    fleet.start_gpu_worker()
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(
        corpus / "bad-input" / "huge" / "pdf2image-memory-error-test-400p.pdf", pages="1-40", mode="tiny"
    )
    wait_until(
        lambda: client.document(document["id"])["state"] == "preparing",
        timeout=60,
        what="preparation to start",
        fleet=fleet,
    )
    cpu.kill_group(signal.SIGKILL)  # mid-render: the sandbox child goes with it
    fleet.start_cpu_worker("worker-cpu-2")
    finished = client.wait_terminal(document["id"], timeout=180)
    assert finished["state"] == "completed" and finished["pages_total"] == 40
    with sessions() as session:
        row = session.get(Document, uuid.UUID(document["id"]))
        assert row is not None and row.prepare_attempts == 2
    assert_invariants(sessions, ids(document))


def _archive(copies: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        label = uuid.uuid4().hex
        for index in range(copies):
            archive.writestr(f"scans/{index:03d}.png", png(f"{label} {index}", size=(64, 40)))
    return buffer.getvalue()


def test_a_cpu_worker_killed_mid_intake_loses_no_archive_member(
    fleet: Fleet, sessions: sessionmaker[Session]
) -> None:
    cpu = fleet.start_cpu_worker()
    client = ApiClient.for_new_tenant(fleet, sessions)
    created = client.http.post("/v1/batches", files={"archive": ("scans.zip", io.BytesIO(_archive(60)))})
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    wait_until(
        lambda: sum(client.http.get(f"/v1/batches/{batch_id}").json()["documents"].values()) >= 1,
        timeout=60,
        what="intake to start making documents",
        fleet=fleet,
    )
    cpu.kill_group(signal.SIGKILL)
    fleet.start_cpu_worker("worker-cpu-2")
    fleet.start_gpu_worker()
    finished = wait_until(
        lambda: (
            (batch := client.http.get(f"/v1/batches/{batch_id}").json())["state"] == "completed" and batch
        ),
        timeout=300,
        what="the batch to complete",
        fleet=fleet,
    )
    with sessions() as session:
        documents = list(
            session.execute(select(Document).where(Document.batch_id == uuid.UUID(batch_id))).scalars()
        )
    assert len(documents) == 60, finished
    assert {d.state for d in documents} == {"completed"}
    assert_invariants(sessions, [d.id for d in documents])


def test_a_stopped_gpu_worker_ends_its_drain_after_the_batch_on_the_engine(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    """``docker compose stop``: SIGTERM to the worker's main process (Celery's warm shutdown)."""
    fleet.start_cpu_worker()
    client = ApiClient.for_new_tenant(fleet, sessions)
    documents = [
        client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="tiny", dedup="false") for _ in range(5)
    ]
    wait_until(
        lambda: all(client.document(d["id"])["pages_total"] == 4 for d in documents),
        timeout=120,
        what="the documents to be prepared",
        fleet=fleet,
    )
    worker = fleet.start_gpu_worker(
        engine_env={"FAKE_ENGINE_BATCH_DELAY_S": "2", "SCRIPTORIUM_ENGINE__MAX_BATCH_PAGES": "2"}
    )
    wait_until(lambda: "batch.prefetched" in worker.log(), timeout=60, what="a prefetched batch", fleet=fleet)
    os.kill(worker.pid, signal.SIGTERM)  # the main process only, as compose does
    assert worker.process is not None
    worker.process.wait(timeout=15)  # about one batch, not the 20 pages of the drain
    pages = [page for document in documents for page in pages_of(sessions, document["id"])]
    assert not [page for page in pages if page.state == "running"], "the stop left pages held"
    done = [page for page in pages if page.state == "done"]
    assert 0 < len(done) < len(pages)
    assert all(page.attempts == 1 for page in done)
    assert all(page.attempts == 0 for page in pages if page.state == "queued"), "a page was charged"
    assert "prefetched, not read" in worker.log()

    fleet.start_gpu_worker("worker-gpu-2")
    for document in documents:
        assert client.wait_terminal(document["id"], timeout=180)["state"] == "completed"
    for document in documents:
        assert all(len(page.ocr_attempts) == 1 for page in pages_of(sessions, document["id"]))
    assert_invariants(sessions, ids(*documents))
