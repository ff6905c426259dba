"""The HTTP side in-process (real Postgres, Redis and S3, no worker): 429s, usage, quota, dedup, lanes."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from scriptorium.db.models import Document, Tenant
from scriptorium.lifecycle.documents import admit_duplicate
from scriptorium.settings import Settings
from scriptorium.states import DocumentState
from scriptorium.storage import ObjectStore
from tests.integration.scheduling.conftest import backlog, document, read_page
from tests.support import builders
from tests.support.units import unit_of_work

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(settings: Settings, store: ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _tenant(sessions: sessionmaker[Session], **limits: object) -> tuple[Tenant, dict[str, str]]:
    with sessions.begin() as session:
        issued = builders.tenant(session)
        for name, value in limits.items():
            setattr(issued.tenant, name, value)
        session.flush()
        session.expunge(issued.tenant)
    return issued.tenant, {"Authorization": f"Bearer {issued.key}"}


def _upload(client: TestClient, auth: dict[str, str], data: bytes, **form: str) -> dict[str, object]:
    response = client.post(
        "/v1/documents", headers=auth, files={"file": ("a.png", io.BytesIO(data))}, data=form
    )
    assert response.status_code == 202, response.text
    body: dict[str, object] = response.json()
    return body


def test_a_tenant_over_its_rate_gets_429_with_retry_after(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    _, limited = _tenant(sessions, rate_limit_per_s=0.2, rate_limit_burst=2)
    _, other = _tenant(sessions)
    statuses = [client.get("/v1/documents", headers=limited).status_code for _ in range(3)]
    refused = client.get("/v1/documents", headers=limited)

    assert statuses == [200, 200, 429]
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 5  # one token back at 0.2/s
    assert client.get("/v1/documents", headers=other).status_code == 200  # buckets are per tenant


def test_usage_in_json_and_csv_and_the_quota(client: TestClient, sessions: sessionmaker[Session]) -> None:
    owner, auth = _tenant(sessions, page_budget=10)
    document_id = backlog(sessions, owner, pages=2)
    assert read_page(sessions, document_id, 1) and read_page(sessions, document_id, 2)

    report = client.get("/v1/usage", headers=auth, params={"group_by": "document"}).json()
    assert [line["key"] for line in report["lines"]] == [str(document_id)]
    assert report["total"]["pages"] == 2 and report["total"]["vision_tokens"] == 512
    exported = client.get("/v1/usage", headers=auth, params={"group_by": "mode", "format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    assert [row["mode"] for row in csv.DictReader(io.StringIO(exported.text))] == ["base"]
    empty = client.get("/v1/usage", headers=auth, params={"from": "2020-01-01", "to": "2020-02-01"}).json()
    assert empty["lines"] == [] and empty["total"]["pages"] == 0
    bad = client.get("/v1/usage", headers=auth, params={"from": "2020-02-01", "to": "2020-01-01"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_window"

    quota = client.get("/v1/quota", headers=auth).json()
    assert (quota["page_budget"], quota["pages_used"], quota["pages_left"]) == (10, 2, 8)
    assert quota["token_budget"] is None and quota["tokens_left"] is None


def test_an_upload_of_the_same_bytes_waits_for_the_first_unless_dedup_is_off(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    _, auth = _tenant(sessions)
    data = b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes
    first = _upload(client, auth, data, pages="1")
    same = _upload(client, auth, data, pages="1-1")  # the same selection, written differently
    fresh = _upload(client, auth, data, pages="1", dedup="false")
    other_task = _upload(client, auth, data, pages="1", task="free_ocr")
    with_password = _upload(client, auth, data, pages="1", password="secret")

    def stored(body: dict[str, object]) -> Document:
        return document(sessions, uuid.UUID(str(body["id"])))

    assert stored(same).duplicate_of == uuid.UUID(str(first["id"])) and same["state"] == "received"
    assert (
        stored(fresh).duplicate_of is None
        and stored(fresh).dedup_fingerprint == stored(first).dedup_fingerprint
    )
    assert stored(other_task).duplicate_of is None
    assert stored(with_password).duplicate_of is None and stored(with_password).dedup_fingerprint is None


def test_priority_is_a_lane(client: TestClient, sessions: sessionmaker[Session]) -> None:
    _, auth = _tenant(sessions)
    bulk = _upload(client, auth, uuid.uuid4().bytes, priority="bulk")
    assert document(sessions, uuid.UUID(str(bulk["id"]))).priority == "bulk"
    refused = client.post(
        "/v1/documents", headers=auth, files={"file": ("a", io.BytesIO(b"x"))}, data={"priority": "urgent"}
    )
    assert refused.status_code == 422


def test_a_completed_duplicate_serves_its_original_s_pages(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    owner, auth = _tenant(sessions)
    original = backlog(sessions, owner, pages=2)
    assert read_page(sessions, original, 1) and read_page(sessions, original, 2)
    with unit_of_work(sessions) as uow:
        duplicate = builders.document_with_pages(uow.session, owner, pages=0)
        duplicate.state = DocumentState.RECEIVED
        source = uow.session.get(Document, original)
        assert source is not None
        admit_duplicate(uow, duplicate, source)
        duplicate_id = duplicate.id

    status = client.get(f"/v1/documents/{duplicate_id}", headers=auth).json()
    assert status["state"] == "completed" and status["pages_total"] == 2 and status["pages"] == {"done": 2}
    assert status["tokens"]["vision"] == 0  # nothing was spent for it
    result = client.get(f"/v1/documents/{duplicate_id}/result", headers=auth).json()
    assert [page["markdown"] for page in result["pages"]] == [f"page {n} of {original}" for n in (1, 2)]
    markdown = client.get(f"/v1/documents/{duplicate_id}/result", headers=auth, params={"format": "markdown"})
    assert f"page 2 of {original}" in markdown.text
    page = client.get(f"/v1/documents/{duplicate_id}/pages/1", headers=auth).json()
    assert page["document_id"] == str(duplicate_id) and page["state"] == "done"
