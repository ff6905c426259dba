"""The whole fleet on real services: API, CPU worker, GPU worker (test engine) and beat processes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Page
from scriptorium.messages import Outbox
from scriptorium.model_families import DEFAULT_MODEL_FAMILY
from scriptorium.queueing import Publisher, create_celery
from scriptorium.settings import Settings
from scriptorium.storage import ObjectStore
from tests.support.client import ApiClient, ids
from tests.support.fleet import Fleet, running_fleet
from tests.support.invariants import assert_invariants

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def fleet(
    env: dict[str, str], store: ObjectStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    events = tmp_path_factory.mktemp("engine") / "events.jsonl"
    with running_fleet({**env, "FAKE_ENGINE_EVENTS": str(events)}, tmp_path_factory.mktemp("fleet")) as fleet:
        fleet.start_api()
        fleet.start_cpu_worker()
        fleet.start_gpu_worker()
        fleet.start_beat()
        yield fleet


@pytest.fixture
def client(fleet: Fleet, sessions: sessionmaker[Session]) -> ApiClient:
    return ApiClient.for_new_tenant(fleet, sessions)


def _engine_events(fleet: Fleet) -> list[dict[str, object]]:
    path = Path(fleet.env["FAKE_ENGINE_EVENTS"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_multi_page_pdf_is_read_in_page_order(
    client: ApiClient, corpus: Path, sessions: sessionmaker[Session]
) -> None:
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf")
    finished = client.wait_terminal(document["id"])
    assert finished["state"] == "completed", finished
    assert (
        finished["pages_total"] == 4
        and finished["pages"].get("done", 0) + finished["pages"].get("skipped", 0) == 4
    )
    result = client.result_json(document["id"])
    assert [page["page_no"] for page in result["pages"]] == [1, 2, 3, 4]
    assert result["failed_pages"] == []
    markdown = client.result_markdown(document["id"]).text
    positions = [markdown.find(f"# Page {n}") for n in (1, 2, 3, 4) if f"# Page {n}" in markdown]
    assert positions == sorted(positions) and positions
    tokens = finished["tokens"]
    pages = [client.page(document["id"], n) for n in range(1, 5)]
    for key in ("vision", "valid", "placeholders", "prompt", "output"):
        assert tokens[key] == sum(page["tokens"][key] for page in pages)
    first = pages[0]
    assert first["routing"]["reason"] and first["routing"]["source"] in ("text_layer", "pixels")
    assert first["image_url"].startswith("http")
    assert_invariants(sessions, ids(document))


def test_a_page_selection_reads_only_those_pages(client: ApiClient, corpus: Path) -> None:
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", pages="2-3")
    finished = client.wait_terminal(document["id"])
    assert finished["state"] == "completed" and finished["page_count"] == 4 and finished["pages_total"] == 2
    assert [page["page_no"] for page in client.result_json(document["id"])["pages"]] == [2, 3]


def test_a_selection_beyond_the_document_fails_clearly(client: ApiClient, corpus: Path) -> None:
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", pages="3-9")
    finished = client.wait_terminal(document["id"])
    assert finished["state"] == "failed"
    assert finished["error"]["code"] == "invalid_pages"


BAD_INPUT_EXPECTATIONS = {
    "encrypted/r2-user-password.pdf": "encrypted",
    "encrypted/2206.01062_pg3.pdf": "encrypted",
    "encrypted/libreoffice-writer-password.pdf": "encrypted",
    "malformed/empty.pdf": "empty",
    "malformed/invalid.pdf": "corrupt",
}


@pytest.mark.parametrize(("name", "reason"), sorted(BAD_INPUT_EXPECTATIONS.items()))
def test_bad_input_fails_with_a_reason_and_the_worker_keeps_serving(
    client: ApiClient, corpus: Path, sessions: sessionmaker[Session], name: str, reason: str
) -> None:
    bad = client.upload(corpus / "bad-input" / name)
    finished = client.wait_terminal(bad["id"])
    assert finished["state"] == "failed"
    assert finished["error"]["code"] == reason
    assert len(finished["error"]["message"]) > 10
    good = client.upload(corpus / "pdf-real" / "crazyones.pdf")
    assert client.wait_terminal(good["id"])["state"] == "completed"
    assert_invariants(sessions, ids(bad, good))


def test_every_bad_input_file_ends_terminal(
    client: ApiClient, corpus: Path, sessions: sessionmaker[Session]
) -> None:
    files = sorted(
        p for p in (corpus / "bad-input").rglob("*") if p.is_file() and p.suffix not in (".md", ".csv")
    )
    documents = {path: client.upload(path, pages="1") for path in files}
    outcomes = {}
    for path, document in documents.items():
        finished = client.wait_terminal(document["id"], timeout=240)
        outcomes[path.relative_to(corpus / "bad-input").as_posix()] = (
            finished["state"],
            (finished["error"] or {}).get("code"),
        )
        if finished["state"] == "failed":
            assert finished["error"]["code"] and finished["error"]["message"], path
    assert outcomes["encrypted/r6-owner-password.pdf"][0] == "completed"
    assert outcomes["odd-images/webp-test.webp"][0] == "completed"
    assert outcomes["odd-images/baiona_cmyk.jpg"][0] == "completed"
    assert outcomes["encrypted/r2-user-password.pdf"] == ("failed", "encrypted")
    assert_invariants(sessions, ids(*documents.values()))


def test_a_password_opens_an_encrypted_pdf(client: ApiClient, corpus: Path) -> None:
    document = client.upload(corpus / "bad-input" / "encrypted" / "r2-user-password.pdf", password="asdfzxcv")
    assert client.wait_terminal(document["id"])["state"] == "completed"


def test_duplicate_page_messages_produce_one_result(
    client: ApiClient, corpus: Path, settings: Settings, sessions: sessionmaker[Session], fleet: Fleet
) -> None:
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf")
    client.wait_terminal(document["id"])
    publisher = Publisher(create_celery(settings))
    outbox = Outbox()

    runs_before = len(_engine_events(fleet))
    for _ in range(3):
        for page_no in (1, 2, 3, 4):
            outbox.ocr([(uuid.UUID(document["id"]), page_no)], model=DEFAULT_MODEL_FAMILY)
    publisher.publish(outbox.take())
    time.sleep(3)
    assert len(_engine_events(fleet)) == runs_before
    with sessions() as session:
        attempts = (
            session.execute(select(Page.attempts).where(Page.document_id == uuid.UUID(document["id"])))
            .scalars()
            .all()
        )
    assert set(attempts) <= {1}
    assert_invariants(sessions, ids(document))


def test_log_context_follows_the_request_into_the_tasks(
    fleet: Fleet, client: ApiClient, corpus: Path
) -> None:
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    with (corpus / "pdf-real" / "crazyones.pdf").open("rb") as handle:
        response = client.http.post(
            "/v1/documents", files={"file": ("crazyones.pdf", handle)}, headers={"X-Request-ID": request_id}
        )
    assert response.headers["X-Request-ID"] == request_id
    document_id = response.json()["id"]
    client.wait_terminal(document_id)
    lines = []
    for process in fleet.processes:
        for line in process.log().splitlines():
            if request_id in line:
                lines.append((process.name, json.loads(line)))
    names = {name for name, _ in lines}
    assert {"api", "worker-cpu", "worker-gpu"} <= names, names
    gpu_events = [event for name, event in lines if name == "worker-gpu"]
    assert all(event["document_id"] == document_id for event in gpu_events)
    assert any(event.get("page_no") == 1 and event.get("task_id") for event in gpu_events)
    assert all(event["level"] in ("debug", "info", "warning", "error", "critical") for _, event in lines)
