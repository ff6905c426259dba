"""What a fuzzer found: numbers past a 32-bit integer and blank idempotency keys answer with a
reason code (404/422), never a 500, and never poison later requests."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from scriptorium.db.models import Batch, Document, Tenant, Watch
from scriptorium.settings import Settings
from scriptorium.storage import ObjectStore
from tests.support import builders

pytestmark = pytest.mark.integration
HUGE = "99999999999"  # past 2**31 - 1, the largest integer column


@pytest.fixture(scope="module")
def client(settings: Settings, store: ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def tenant_auth(sessions: sessionmaker[Session]) -> tuple[Tenant, dict[str, str]]:
    with sessions.begin() as session:
        issued = builders.tenant(session)
    return issued.tenant, {"Authorization": f"Bearer {issued.key}"}


def _upload(client: TestClient, headers: dict[str, str], **form: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/documents", headers=headers, files={"file": ("a.pdf", io.BytesIO(b"%PDF-1.4 fuzz"))}, data=form
    )


def _code(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code in (404, 409, 422), (response.status_code, response.text)
    return str(response.json()["error"]["code"])


def test_page_numbers_past_32_bits_are_not_found_or_invalid(
    client: TestClient, tenant_auth: tuple[Tenant, dict[str, str]]
) -> None:
    _, auth = tenant_auth
    document_id = _upload(client, auth).json()["id"]
    for page in (HUGE, "2147483648", "-1", "0"):
        response = client.get(f"/v1/documents/{document_id}/pages/{page}", headers=auth)
        assert _code(response) in ("not_found", "invalid_request")
    assert _code(client.get(f"/v1/documents/{document_id}/pages/2147483647", headers=auth)) == "not_found"


@pytest.mark.parametrize("pages", [f"1-{HUGE}", HUGE, f"{HUGE}-", "2147483648", "1-3," + "9" * 400])
def test_page_selections_past_32_bits_are_invalid_pages(
    client: TestClient, tenant_auth: tuple[Tenant, dict[str, str]], pages: str
) -> None:
    _, auth = tenant_auth
    assert _code(_upload(client, auth, pages=pages)) == "invalid_pages"
    batch = client.post("/v1/batches", headers=auth, data={"pages": pages})
    assert _code(batch) == "invalid_pages"


@pytest.mark.parametrize("cursor", [HUGE, "2147483648", "²", "-5", "1e9"])
def test_batch_cursors_past_32_bits_are_invalid_cursors(
    client: TestClient, tenant_auth: tuple[Tenant, dict[str, str]], cursor: str
) -> None:
    _, auth = tenant_auth
    batch_id = client.post("/v1/batches", headers=auth, data={"name": "fuzz"}).json()["id"]
    for path in ("items", "documents"):
        response = client.get(f"/v1/batches/{batch_id}/{path}", headers=auth, params={"cursor": cursor})
        assert _code(response) == "invalid_cursor"


@pytest.mark.parametrize("limit", [HUGE, "0", "-1"])
def test_limits_out_of_range_are_invalid_requests(
    client: TestClient, tenant_auth: tuple[Tenant, dict[str, str]], limit: str
) -> None:
    _, auth = tenant_auth
    batch_id = client.post("/v1/batches", headers=auth, data={"name": "limits"}).json()["id"]
    for path in ("/v1/documents", "/v1/batches", f"/v1/batches/{batch_id}/items"):
        response = client.get(path, headers=auth, params={"limit": limit})
        assert _code(response) == "invalid_request", path


@pytest.mark.parametrize("key", ["", " ", "\t"])
def test_a_blank_idempotency_key_is_refused_and_poisons_nothing(
    client: TestClient, tenant_auth: tuple[Tenant, dict[str, str]], key: str
) -> None:
    _, auth = tenant_auth
    for _ in range(2):
        response = _upload(client, {**auth, "Idempotency-Key": key})
        assert _code(response) == "invalid_idempotency_key"
        response = client.post("/v1/batches", headers={**auth, "Idempotency-Key": key}, data={"name": "b"})
        assert _code(response) == "invalid_idempotency_key"
    assert _upload(client, auth).status_code == 202
    assert client.post("/v1/batches", headers=auth, data={"name": "b"}).status_code == 202


def test_rows_stored_with_a_blank_key_before_the_fix_break_nothing(
    client: TestClient, tenant_auth: tuple[Tenant, dict[str, str]], sessions: sessionmaker[Session]
) -> None:
    tenant, auth = tenant_auth
    first = _upload(client, auth).json()["id"]
    batch = client.post("/v1/batches", headers=auth, data={"name": "old"}).json()["id"]
    with sessions.begin() as session:  # what an earlier version stored for an empty header
        document = session.get(Document, uuid.UUID(first))
        old_batch = session.get(Batch, uuid.UUID(batch))
        assert document is not None and old_batch is not None and document.tenant_id == tenant.id
        document.idempotency_key = ""
        old_batch.idempotency_key = ""
    for _ in range(2):
        assert _upload(client, auth).status_code == 202
        assert _upload(client, {**auth, "Idempotency-Key": "fine-key"}).status_code == 202
        assert client.post("/v1/batches", headers=auth, data={"name": "new"}).status_code == 202
        assert _code(_upload(client, {**auth, "Idempotency-Key": ""})) == "invalid_idempotency_key"


@pytest.mark.parametrize("cursor", ["9" * 20, "9223372036854775808", "²", "-1"])
def test_watch_object_cursors_past_64_bits_are_invalid_cursors(
    client: TestClient,
    tenant_auth: tuple[Tenant, dict[str, str]],
    sessions: sessionmaker[Session],
    cursor: str,
) -> None:
    tenant, auth = tenant_auth
    with sessions.begin() as session:
        watch = Watch(
            tenant_id=tenant.id,
            name="fuzz",
            source="archive",
            bucket="b",
            prefix="",
            options={},
            token_hash="0" * 64,
        )
        session.add(watch)
        session.flush()
        watch_id = watch.id
    response = client.get(f"/v1/watches/{watch_id}/objects", headers=auth, params={"cursor": cursor})
    assert _code(response) == "invalid_cursor"
