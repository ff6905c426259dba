"""The webhook admin API in-process against real Postgres, a real receiver and the real sender."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from scriptorium.db.models import Document, Tenant
from scriptorium.settings import Settings
from scriptorium.storage import ObjectStore
from tests.integration.webhooks.conftest import finished_document, with_webhooks
from tests.integration.webhooks.receiver import Answer, Receiver
from tests.support import builders
from worker.webhook_sender import WebhookSender

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(webhook_settings: Settings, store: ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(webhook_settings)) as test_client:
        yield test_client


@pytest.fixture
def caller(sessions: sessionmaker[Session]) -> tuple[Tenant, dict[str, str]]:
    with sessions.begin() as session:
        issued = builders.tenant(session)
    return issued.tenant, {"Authorization": f"Bearer {issued.key}"}


def _create(client: TestClient, auth: dict[str, str], url: str, **fields: object) -> dict[str, object]:
    response = client.post("/v1/webhooks/endpoints", headers=auth, json={"url": url, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_endpoint_lifecycle_shows_the_secret_once(
    client: TestClient, caller: tuple[Tenant, dict[str, str]], receiver: Receiver
) -> None:
    _, auth = caller
    created = _create(client, auth, receiver.url(), description="billing", event_types=["document.failed"])
    assert str(created["secret"]).startswith("whsec_")
    assert created["event_types"] == ["document.failed"] and created["enabled"] is True
    endpoint_id = created["id"]
    shown = client.get(f"/v1/webhooks/endpoints/{endpoint_id}", headers=auth).json()
    assert "secret" not in shown and shown["description"] == "billing"
    listed = client.get("/v1/webhooks/endpoints", headers=auth).json()["items"]
    assert [item["id"] for item in listed] == [endpoint_id] and "secret" not in listed[0]

    patched = client.patch(
        f"/v1/webhooks/endpoints/{endpoint_id}",
        headers=auth,
        json={
            "event_types": ["document.completed", "document.partial"],
            "enabled": False,
            "description": None,
        },
    ).json()
    assert patched["event_types"] == ["document.completed", "document.partial"]
    assert patched["enabled"] is False and patched["disabled_reason"] and patched["description"] is None
    enabled = client.patch(
        f"/v1/webhooks/endpoints/{endpoint_id}", headers=auth, json={"enabled": True}
    ).json()
    assert enabled["enabled"] is True and enabled["disabled_reason"] is None

    assert client.delete(f"/v1/webhooks/endpoints/{endpoint_id}", headers=auth).status_code == 204
    assert client.get(f"/v1/webhooks/endpoints/{endpoint_id}", headers=auth).status_code == 404
    assert client.get("/v1/webhooks/endpoints", headers=auth).json()["items"] == []


def test_tenants_never_see_each_others_endpoints_or_deliveries(
    client: TestClient,
    caller: tuple[Tenant, dict[str, str]],
    sessions: sessionmaker[Session],
    receiver: Receiver,
) -> None:
    owner, auth = caller
    endpoint_id = _create(client, auth, receiver.url())["id"]
    finished_document(sessions, owner, pages=1)
    [delivery] = client.get("/v1/webhooks/deliveries", headers=auth).json()["items"]
    with sessions.begin() as session:
        stranger = {"Authorization": f"Bearer {builders.tenant(session).key}"}
    assert client.get(f"/v1/webhooks/endpoints/{endpoint_id}", headers=stranger).status_code == 404
    assert client.patch(f"/v1/webhooks/endpoints/{endpoint_id}", headers=stranger, json={}).status_code == 404
    assert client.delete(f"/v1/webhooks/endpoints/{endpoint_id}", headers=stranger).status_code == 404
    assert client.get("/v1/webhooks/deliveries", headers=stranger).json()["items"] == []
    assert client.get(f"/v1/webhooks/deliveries/{delivery['id']}", headers=stranger).status_code == 404
    assert (
        client.post(f"/v1/webhooks/deliveries/{delivery['id']}/replay", headers=stranger).status_code == 404
    )


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1:9/x", "must use https"),
        ("https://10.0.0.8/x", "private network"),
        ("https://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("https://[::ffff:127.0.0.1]/x", "IPv4-mapped"),
        ("https://localhost/x", "loopback"),
        ("https://user:pw@example.com/x", "credentials"),
    ],
)
def test_unsafe_urls_are_refused_at_registration(
    settings: Settings, store: ObjectStore, sessions: sessionmaker[Session], url: str, fragment: str
) -> None:
    strict = with_webhooks(settings, allow_http=False, allowed_networks=[])
    with sessions.begin() as session:
        auth = {"Authorization": f"Bearer {builders.tenant(session).key}"}
    with TestClient(create_app(strict)) as strict_client:
        response = strict_client.post("/v1/webhooks/endpoints", headers=auth, json={"url": url})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_webhook_url"
    assert fragment in response.json()["error"]["message"]


def test_bad_event_types_and_unknown_fields_are_refused(
    client: TestClient, caller: tuple[Tenant, dict[str, str]], receiver: Receiver
) -> None:
    _, auth = caller
    for body in (
        {"url": receiver.url(), "event_types": ["document.exploded"]},
        {"url": receiver.url(), "event_types": []},
    ):
        response = client.post("/v1/webhooks/endpoints", headers=auth, json=body)
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_event_types"
    response = client.post(
        "/v1/webhooks/endpoints", headers=auth, json={"url": receiver.url(), "secret": "mine"}
    )
    assert response.status_code == 422


def test_rotation_returns_a_new_secret_and_keeps_the_old_one_for_the_grace(
    client: TestClient,
    caller: tuple[Tenant, dict[str, str]],
    sessions: sessionmaker[Session],
    receiver: Receiver,
    webhook_settings: Settings,
) -> None:
    owner, auth = caller
    created = _create(client, auth, receiver.url())
    rotated = client.post(f"/v1/webhooks/endpoints/{created['id']}/rotate-secret", headers=auth).json()
    assert rotated["secret"] != created["secret"] and rotated["previous_secret_expires_at"]
    finished_document(sessions, owner, pages=1)
    WebhookSender(sessions, webhook_settings).run(budget_s=30)
    [request] = receiver.requests()
    assert request.signed_by(str(rotated["secret"])) and request.signed_by(str(created["secret"]))


def test_a_document_webhook_url_needs_the_tenant_secret_and_is_stored(
    client: TestClient,
    caller: tuple[Tenant, dict[str, str]],
    sessions: sessionmaker[Session],
    receiver: Receiver,
) -> None:
    _, auth = caller
    form = {"webhook_url": receiver.url("/doc")}
    files = {"file": ("a.pdf", io.BytesIO(b"%PDF-1.4 test"))}
    refused = client.post("/v1/documents", headers=auth, files=files, data=form)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "webhook_secret_missing"
    assert client.get("/v1/webhooks/signing-secret", headers=auth).json() == {
        "exists": False,
        "created_at": None,
        "updated_at": None,
        "previous_secret_expires_at": None,
    }

    first = client.post("/v1/webhooks/signing-secret", headers=auth).json()
    assert str(first["secret"]).startswith("whsec_") and first["previous_secret_expires_at"] is None
    second = client.post("/v1/webhooks/signing-secret", headers=auth).json()
    assert second["secret"] != first["secret"] and second["previous_secret_expires_at"]
    assert client.get("/v1/webhooks/signing-secret", headers=auth).json()["exists"] is True

    bad = client.post(
        "/v1/documents",
        headers=auth,
        files={"file": ("a.pdf", io.BytesIO(b"%PDF-1.4"))},
        data={"webhook_url": "ftp://example.com/x"},
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_webhook_url"
    accepted = client.post(
        "/v1/documents", headers=auth, files={"file": ("a.pdf", io.BytesIO(b"%PDF-1.4"))}, data=form
    )
    assert accepted.status_code == 202, accepted.text
    with sessions() as session:
        document = session.get(Document, uuid.UUID(accepted.json()["id"]))
        assert document is not None and document.webhook_url == receiver.url("/doc")


def test_the_delivery_log_shows_attempts_and_replay_resends_the_same_webhook_id(
    client: TestClient,
    caller: tuple[Tenant, dict[str, str]],
    sessions: sessionmaker[Session],
    receiver: Receiver,
    webhook_settings: Settings,
) -> None:
    owner, auth = caller
    endpoint_id = _create(client, auth, receiver.url())["id"]
    receiver.answer(Answer(500, body=b"down for maintenance"), Answer(200))
    document_id = finished_document(sessions, owner, pages=1)
    other_document = finished_document(sessions, owner, pages=1)
    WebhookSender(sessions, webhook_settings).run(budget_s=30)

    log = client.get("/v1/webhooks/deliveries", headers=auth, params={"document_id": str(document_id)}).json()
    [delivery] = log["items"]
    assert delivery["state"] in ("retrying", "delivered") and delivery["endpoint_id"] == endpoint_id
    retrying = client.get("/v1/webhooks/deliveries", headers=auth, params={"state": "retrying"}).json()[
        "items"
    ]
    assert len(retrying) == 1 and retrying[0]["attempts"][0]["status_code"] == 500
    assert retrying[0]["attempts"][0]["response_excerpt"] == "down for maintenance"
    assert retrying[0]["next_attempt_at"] is not None

    page = client.get("/v1/webhooks/deliveries", headers=auth, params={"limit": 1}).json()
    rest = client.get(
        "/v1/webhooks/deliveries", headers=auth, params={"limit": 1, "cursor": page["next_cursor"]}
    ).json()
    assert {page["items"][0]["document_id"], rest["items"][0]["document_id"]} == {
        str(document_id),
        str(other_document),
    }
    assert rest["next_cursor"] is None

    delivered = next(
        item
        for item in client.get("/v1/webhooks/deliveries", headers=auth).json()["items"]
        if item["state"] == "delivered"
    )
    replayed = client.post(f"/v1/webhooks/deliveries/{delivered['id']}/replay", headers=auth)
    assert replayed.status_code == 202 and replayed.json()["state"] == "pending"
    WebhookSender(sessions, webhook_settings).run(budget_s=30)
    matching = [r for r in receiver.requests() if r.webhook_id == delivered["webhook_id"]]
    assert len(matching) == 2 and matching[0].body == matching[1].body
    again = client.get(f"/v1/webhooks/deliveries/{delivered['id']}", headers=auth).json()
    assert again["state"] == "delivered" and again["attempt_count"] == 2
    assert [a["status_code"] for a in again["attempts"]] == [200, 200]
    assert all(a["address"] == "127.0.0.1" and a["latency_ms"] >= 0 for a in again["attempts"])


def test_replay_is_refused_while_the_endpoint_is_disabled(
    client: TestClient,
    caller: tuple[Tenant, dict[str, str]],
    sessions: sessionmaker[Session],
    receiver: Receiver,
    webhook_settings: Settings,
) -> None:
    owner, auth = caller
    endpoint_id = _create(client, auth, receiver.url())["id"]
    receiver.answer(Answer(410))
    finished_document(sessions, owner, pages=1)
    WebhookSender(sessions, webhook_settings).run(budget_s=30)
    [dead] = client.get("/v1/webhooks/deliveries", headers=auth, params={"state": "dead"}).json()["items"]
    assert dead["last_status_code"] == 410
    endpoint = client.get(f"/v1/webhooks/endpoints/{endpoint_id}", headers=auth).json()
    assert endpoint["enabled"] is False and "410" in endpoint["disabled_reason"]

    refused = client.post(f"/v1/webhooks/deliveries/{dead['id']}/replay", headers=auth)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "endpoint_disabled"
    client.patch(f"/v1/webhooks/endpoints/{endpoint_id}", headers=auth, json={"enabled": True})
    receiver.answer(Answer(200))
    assert client.post(f"/v1/webhooks/deliveries/{dead['id']}/replay", headers=auth).status_code == 202
    WebhookSender(sessions, webhook_settings).run(budget_s=30)
    assert client.get(f"/v1/webhooks/deliveries/{dead['id']}", headers=auth).json()["state"] == "delivered"
    assert (
        client.get("/v1/webhooks/deliveries", headers=auth, params={"cursor": "garbage!"}).status_code == 422
    )
