"""Webhooks through the real fleet: API, CPU worker (the sender), GPU workers (test engine) and beat."""

from __future__ import annotations

import io
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Page
from scriptorium.messages import Outbox
from scriptorium.model_families import DEFAULT_MODEL_FAMILY
from scriptorium.queueing import Publisher, create_celery
from scriptorium.settings import Settings
from scriptorium.storage import ObjectStore
from tests.integration.webhooks.conftest import deliveries_of, events_of, webhook_env_vars
from tests.integration.webhooks.receiver import Answer, closed_port, running_receiver
from tests.support.client import ApiClient, ids
from tests.support.fleet import Fleet, running_fleet, wait_until
from tests.support.invariants import assert_invariants

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLEET_WEBHOOKS = webhook_env_vars(retry_schedule_s=[1, 1, 1, 1, 1, 1, 1, 1])


@pytest.fixture(scope="module")
def fleet(
    env: dict[str, str], store: ObjectStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    with running_fleet({**env, **FLEET_WEBHOOKS}, tmp_path_factory.mktemp("webhook-fleet")) as fleet:
        fleet.start_api()
        fleet.start_cpu_worker()
        fleet.start_beat()
        yield fleet


@pytest.fixture
def client(fleet: Fleet, sessions: sessionmaker[Session]) -> ApiClient:
    return ApiClient.for_new_tenant(fleet, sessions)


def _register(client: ApiClient, url: str) -> dict[str, Any]:
    response = client.http.post("/v1/webhooks/endpoints", json={"url": url})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _cancelled_document(client: ApiClient) -> str:
    """Upload, then cancel at once: a terminal event without needing a GPU worker."""
    response = client.http.post("/v1/documents", files={"file": ("a.pdf", io.BytesIO(b"%PDF-1.4 test"))})
    assert response.status_code == 202, response.text
    document_id: str = response.json()["id"]
    cancelled = client.http.delete(f"/v1/documents/{document_id}")
    if cancelled.status_code == 409:  # preparation failed it first; still exactly one terminal event
        return document_id
    assert cancelled.status_code == 202, cancelled.text
    return document_id


def _delivery(client: ApiClient, document_id: str) -> dict[str, Any]:
    items = client.http.get("/v1/webhooks/deliveries", params={"document_id": document_id}).json()["items"]
    assert len(items) == 1, items
    item: dict[str, Any] = items[0]
    return item


def test_a_receiver_down_then_back_gets_the_event_exactly_once(fleet: Fleet, client: ApiClient) -> None:
    port = closed_port()
    secret = _register(client, f"http://127.0.0.1:{port}/hook")["secret"]
    document_id = _cancelled_document(client)
    wait_until(
        lambda: len(_delivery(client, document_id)["attempts"]) >= 2,
        timeout=60,
        what="two failed attempts",
        fleet=fleet,
    )
    failed = _delivery(client, document_id)
    assert failed["state"] == "retrying"
    assert all(a["status_code"] is None and "ConnectError" in a["error"] for a in failed["attempts"])

    with running_receiver(port) as receiver:
        wait_until(
            lambda: _delivery(client, document_id)["state"] == "delivered",
            timeout=60,
            what="the delivery once the receiver is back",
            fleet=fleet,
        )
        time.sleep(2)  # several polls later, still nothing more
        [request] = receiver.requests()
    assert request.signed_by(secret) and request.webhook_id == failed["webhook_id"]
    assert request.json["type"] in ("document.cancelled", "document.failed")
    delivered = _delivery(client, document_id)
    assert delivered["attempts"][-1]["status_code"] == 200
    assert len(delivered["attempts"]) == delivered["attempt_count"] >= 3


def test_a_sender_killed_mid_delivery_does_not_lose_the_event(
    fleet: Fleet, client: ApiClient, sessions: sessionmaker[Session]
) -> None:
    release = threading.Event()
    with running_receiver() as receiver:
        receiver.answer(Answer(200, hold=release), Answer(200))
        secret = _register(client, receiver.url())["secret"]
        document_id = _cancelled_document(client)
        assert receiver.got_request.wait(timeout=60), fleet.logs()
        [worker] = [p for p in fleet.processes if p.name.startswith("worker-cpu")]
        worker.kill_group(signal.SIGKILL)  # main process and pool child, mid-request
        fleet.processes.remove(worker)
        release.set()
        fleet.start_cpu_worker("worker-cpu-restarted")
        wait_until(
            lambda: _delivery(client, document_id)["state"] == "delivered",
            timeout=90,
            what="the delivery after the sender died",
            fleet=fleet,
        )
        requests = receiver.requests()
    assert len(requests) == 2 and requests[0].webhook_id == requests[1].webhook_id
    assert all(request.signed_by(secret) for request in requests)
    delivery = _delivery(client, document_id)
    assert delivery["attempt_count"] == 2  # the first claim was started, then its sender died
    assert [a["status_code"] for a in delivery["attempts"]] == [200]  # only the surviving attempt is logged
    assert len(events_of(sessions, uuid.UUID(document_id))) == 1


def _page_image(path: Path) -> Path:
    image = Image.new("RGB", (1224, 1584), "white")
    draw = ImageDraw.Draw(image)
    for line in range(30):
        draw.rectangle((120, 120 + line * 45, 1000 - (line % 4) * 90, 140 + line * 45), fill="black")
    image.save(path)
    return path


def test_an_upload_produces_exactly_one_signed_completion_at_a_real_receiver(
    fleet: Fleet, client: ApiClient, sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    fleet.start_gpu_worker("worker-gpu-a", engine_env={"FAKE_ENGINE_DELAY_S": "0.5"})
    fleet.start_gpu_worker("worker-gpu-b", engine_env={"FAKE_ENGINE_DELAY_S": "0.5"})
    with running_receiver() as receiver:
        secret = _register(client, receiver.url())["secret"]
        document = client.upload(_page_image(tmp_path / "page.png"))
        document_id = uuid.UUID(document["id"])
        wait_until(lambda: _pages(sessions, document_id), timeout=60, what="the page rows", fleet=fleet)
        publisher = Publisher(create_celery(settings))
        outbox = Outbox()
        for _ in range(3):  # duplicate page tasks, racing the real ones on two GPU workers
            for page_no in _pages(sessions, document_id):
                outbox.ocr([(document_id, page_no)], model=DEFAULT_MODEL_FAMILY)
        publisher.publish(outbox.take())
        finished = client.wait_terminal(document["id"])
        assert finished["state"] == "completed", finished
        wait_until(receiver.requests, timeout=30, what="the webhook", fleet=fleet)
        time.sleep(2)
        [request] = receiver.requests()
    assert request.signed_by(secret)
    body = request.json
    assert body["type"] == "document.completed" and body["data"]["document_id"] == document["id"]
    assert (
        body["data"]["state"] == "completed"
        and body["data"]["tokens"]["vision"] == finished["tokens"]["vision"]
    )
    assert body["data"]["links"]["self"].endswith(f"/v1/documents/{document['id']}")
    assert "Read at" not in request.body.decode()  # thin: no page text
    [delivery] = deliveries_of(sessions, document_id)
    assert delivery.state == "delivered" and delivery.message_id == request.webhook_id
    assert len(events_of(sessions, document_id)) == 1
    logged = _delivery(client, document["id"])
    assert [a["status_code"] for a in logged["attempts"]] == [200]
    assert_invariants(sessions, ids(document))


def _pages(sessions: sessionmaker[Session], document_id: uuid.UUID) -> list[int]:
    with sessions() as session:
        return list(session.execute(select(Page.page_no).where(Page.document_id == document_id)).scalars())
