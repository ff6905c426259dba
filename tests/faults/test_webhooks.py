"""A webhook receiver that is down, slow, failing, then gone (410): each event arrives exactly once."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.storage import ObjectStore
from tests.integration.webhooks.conftest import events_of, webhook_env_vars
from tests.integration.webhooks.receiver import Answer, closed_port, running_receiver
from tests.support.client import ApiClient
from tests.support.fleet import Fleet, running_fleet, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def fleet(fault_env: dict[str, str], store: ObjectStore, tmp_path: Path) -> Iterator[Fleet]:
    env = {**fault_env, **webhook_env_vars(retry_schedule_s=[1, 1, 1, 1, 1, 1, 1, 1])}
    with running_fleet(env, tmp_path) as fleet:
        fleet.start_api()
        fleet.start_cpu_worker()
        fleet.start_beat()
        yield fleet


def _finished_document(client: ApiClient) -> str:
    """Upload, then cancel: a terminal event without needing a GPU worker."""
    response = client.http.post("/v1/documents", files={"file": ("a.pdf", io.BytesIO(b"%PDF-1.4 test"))})
    assert response.status_code == 202, response.text
    document_id: str = response.json()["id"]
    assert client.http.delete(f"/v1/documents/{document_id}").status_code in (202, 409)
    return document_id


def _delivery(client: ApiClient, document_id: str) -> dict[str, Any]:
    items = client.http.get("/v1/webhooks/deliveries", params={"document_id": document_id}).json()["items"]
    assert len(items) == 1, items
    item: dict[str, Any] = items[0]
    return item


def test_a_receiver_down_slow_and_failing_gets_the_event_once_and_a_410_disables_it(
    fleet: Fleet, sessions: sessionmaker[Session]
) -> None:
    client = ApiClient.for_new_tenant(fleet, sessions)
    port = closed_port()
    created = client.http.post("/v1/webhooks/endpoints", json={"url": f"http://127.0.0.1:{port}/hook"})
    assert created.status_code == 201, created.text
    endpoint_id, secret = created.json()["id"], created.json()["secret"]
    document_id = _finished_document(client)
    wait_until(
        lambda: len(_delivery(client, document_id)["attempts"]) >= 1,
        timeout=60,
        what="an attempt at the receiver that is down",
        fleet=fleet,
    )
    never = threading.Event()  # slower than the sender's 3 s total timeout
    with running_receiver(port) as receiver:
        receiver.answer(Answer(503), Answer(200, hold=never), Answer(500), Answer(200))
        wait_until(
            lambda: _delivery(client, document_id)["state"] == "delivered",
            timeout=120,
            what="delivery once the receiver answers 200",
            fleet=fleet,
        )
        never.set()
        requests = receiver.requests()
        assert [r.webhook_id for r in requests] == [requests[0].webhook_id] * 4, "retries of one delivery"
        assert all(r.signed_by(secret) for r in requests)
        delivery = _delivery(client, document_id)
        codes = [a["status_code"] for a in delivery["attempts"]]
        assert codes[0] is None and codes[-1] == 200 and 503 in codes and 500 in codes
        assert len(events_of(sessions, uuid.UUID(document_id))) == 1

        receiver.answer(Answer(410))  # the receiver says: gone for good
        second = _finished_document(client)
        wait_until(
            lambda: _delivery(client, second)["state"] == "dead",
            timeout=60,
            what="the 410 to end the delivery",
            fleet=fleet,
        )
        endpoint = client.http.get(f"/v1/webhooks/endpoints/{endpoint_id}").json()
        assert endpoint["enabled"] is False and "410" in (endpoint.get("disabled_reason") or "")
        third = _finished_document(client)
        wait_until(
            lambda: client.document(third)["state"] in ("cancelled", "failed"),
            timeout=30,
            what="a third event",
        )
        items = client.http.get("/v1/webhooks/deliveries", params={"document_id": third}).json()["items"]
        assert items == [], "a disabled endpoint gets nothing more"
        assert len(receiver.requests()) == 5
