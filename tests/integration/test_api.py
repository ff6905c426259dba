"""The HTTP API in-process against real Postgres, Redis and S3 (no worker running)."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from scriptorium.db.models import Document
from scriptorium.settings import Settings
from scriptorium.storage import ObjectStore
from tests.support import builders


@pytest.fixture(scope="module")
def client(settings: Settings, store: ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _key(sessions: sessionmaker[Session]) -> str:
    with sessions.begin() as session:
        return builders.tenant(session).key


@pytest.fixture
def auth(sessions: sessionmaker[Session]) -> dict[str, str]:
    return {"Authorization": f"Bearer {_key(sessions)}"}


def _upload(client: TestClient, auth: dict[str, str], data: bytes = b"%PDF-1.4 test", **form: str):  # type: ignore[no-untyped-def]
    headers = dict(auth)
    if "idempotency_key" in form:
        headers["Idempotency-Key"] = form.pop("idempotency_key")
    return client.post(
        "/v1/documents", headers=headers, files={"file": ("a.pdf", io.BytesIO(data))}, data=form
    )


def test_requests_without_a_valid_key_are_refused(client: TestClient) -> None:
    assert client.get("/v1/documents").status_code == 401
    response = client.get("/v1/documents", headers={"Authorization": "Bearer sk_nope_nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_upload_is_accepted_stored_and_hashed(
    client: TestClient, auth: dict[str, str], store: ObjectStore, sessions: sessionmaker[Session]
) -> None:
    response = _upload(client, auth, b"%PDF-1.7 hello", pages="1-3,5", mode="small", metadata='{"ref": 7}')
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["Location"].endswith(f"/v1/documents/{body['id']}")
    assert int(response.headers["Retry-After"]) > 0
    assert body["state"] == "received"
    assert (
        body["sha256"] == "a2f0e3a1c8ee2b2ae1baa9bbe4be0a4ae1b78e3f1a4bb7b32a85a2d6d2b6bd0b"
        or len(body["sha256"]) == 64
    )
    assert body["routing_policy"]["mode"] == "small"
    assert body["metadata"] == {"ref": 7}
    assert body["page_selection"] == "1-3,5"
    with sessions() as session:
        document = session.get(Document, uuid.UUID(body["id"]))
        assert document is not None
        assert store.get_bytes(document.raw_key) == b"%PDF-1.7 hello"
    import hashlib

    assert body["sha256"] == hashlib.sha256(b"%PDF-1.7 hello").hexdigest()


def test_idempotency_key_returns_the_same_document(client: TestClient, auth: dict[str, str]) -> None:
    first = _upload(client, auth, idempotency_key="batch-7-file-1")
    second = _upload(client, auth, idempotency_key="batch-7-file-1")
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers.get("Idempotent-Replayed") == "true"


def test_other_tenants_documents_are_invisible(
    client: TestClient, auth: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    document_id = _upload(client, auth).json()["id"]
    other = {"Authorization": f"Bearer {_key(sessions)}"}
    assert client.get(f"/v1/documents/{document_id}", headers=other).status_code == 404
    assert client.delete(f"/v1/documents/{document_id}", headers=other).status_code == 404
    assert client.get(f"/v1/documents/{document_id}/result", headers=other).status_code == 404
    assert client.get(f"/v1/documents/{document_id}", headers=auth).status_code == 200


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"pages": "3-1"}, "invalid_pages"),
        ({"mode": "enormous"}, "invalid_policy"),
        ({"policy": '{"min_mode": "large", "max_mode": "tiny"}'}, "invalid_policy"),
        ({"policy": "not json"}, "invalid_policy"),
        ({"metadata": "[1, 2]"}, "invalid_metadata"),
        ({"task": "poetry"}, "invalid_request"),
    ],
)
def test_bad_options_are_refused_with_a_reason(
    client: TestClient, auth: dict[str, str], form: dict[str, str], code: str
) -> None:
    response = _upload(client, auth, **form)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code


def test_listing_pages_with_a_cursor_and_filters_by_state(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    auth = {"Authorization": f"Bearer {_key(sessions)}"}
    ids = {_upload(client, auth).json()["id"] for _ in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/documents", headers=auth, params=params).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(seen) == ids and len(seen) == 5
    received = client.get("/v1/documents", headers=auth, params={"state": "received"}).json()
    assert len(received["items"]) == 5
    assert client.get("/v1/documents", headers=auth, params={"state": "completed"}).json()["items"] == []
    assert client.get("/v1/documents", headers=auth, params={"cursor": "!!"}).status_code == 422


def test_results_wait_for_a_terminal_state(client: TestClient, auth: dict[str, str]) -> None:
    document_id = _upload(client, auth).json()["id"]
    response = client.get(f"/v1/documents/{document_id}/result", headers=auth)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_ready"


def test_cancel_is_final(client: TestClient, auth: dict[str, str]) -> None:
    document_id = _upload(client, auth).json()["id"]
    response = client.delete(f"/v1/documents/{document_id}", headers=auth)
    assert response.status_code == 202
    assert response.json()["state"] == "cancelled"
    assert client.delete(f"/v1/documents/{document_id}", headers=auth).status_code == 409
    result = client.get(f"/v1/documents/{document_id}/result", params={"format": "json"}, headers=auth)
    assert result.status_code == 200 and result.json()["document"]["state"] == "cancelled"


def test_request_ids_are_echoed(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["X-Request-ID"]
    assert generated != "bad id with spaces" and len(generated) == 32


def test_readiness_checks_every_dependency(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok", "storage": "ok"}


def test_readiness_fails_when_storage_is_unreachable(settings: Settings) -> None:
    broken = settings.model_copy(
        update={"storage": settings.storage.model_copy(update={"endpoint": "127.0.0.1:1"})}
    )
    with TestClient(create_app(broken)) as broken_client:
        response = broken_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"].startswith("error")


def test_upload_over_the_size_limit_is_refused(
    settings: Settings, auth: dict[str, str], store: ObjectStore
) -> None:
    small = settings.model_copy(
        update={"limits": settings.limits.model_copy(update={"max_upload_bytes": 1000})}
    )
    with TestClient(create_app(small)) as limited:
        response = _upload(limited, auth, b"x" * 5000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_openapi_is_published(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "/v1/documents" in schema["paths"]
    assert "/v1/documents/{document_id}/pages/{page_no}" in schema["paths"]
    json.dumps(schema)


def test_an_unexpected_error_answers_500_in_the_error_envelope(
    settings: Settings, store: ObjectStore
) -> None:
    app = create_app(settings)

    @app.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("internal detail that must not leak")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/v1/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "the request failed unexpectedly; it was logged"}
    }
