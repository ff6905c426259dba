"""A PDF with one page that cannot be drawn is prepared page by page: that page fails with its
reason, the others are read, and the document ends ``partial`` (real Postgres, Redis and S3; the
render runs in the real sandbox child)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from scriptorium.db.models import Document
from scriptorium.lifecycle.claims import claim_page
from scriptorium.lifecycle.recording import record_page_outcome
from scriptorium.settings import Settings
from scriptorium.storage import ObjectStore
from tests.support import builders
from tests.support.invariants import assert_invariants
from tests.support.rows import pages_of
from tests.support.units import unit_of_work
from tests.unit.prepare.broken_pdf import GOOD, HUGE, NOT_A_PAGE, pdf_with_pages
from worker.preparation import prepare_document
from worker.runtime import WorkerRuntime

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(settings: Settings, store: ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def test_an_unreadable_page_fails_alone_and_the_document_ends_partial(
    api: TestClient, runtime: WorkerRuntime, sessions: sessionmaker[Session], store: ObjectStore
) -> None:
    with sessions.begin() as session:
        auth = {"Authorization": f"Bearer {builders.tenant(session).key}"}
    data = pdf_with_pages([GOOD, NOT_A_PAGE, GOOD, HUGE])
    response = api.post("/v1/documents", headers=auth, files={"file": ("damaged.pdf", io.BytesIO(data))})
    assert response.status_code == 202, response.text
    document_id = uuid.UUID(response.json()["id"])

    prepare_document(runtime, document_id)

    pages = pages_of(sessions, document_id)
    assert [(page.page_no, page.state, page.error_code) for page in pages] == [
        (1, "queued", None),
        (2, "failed", "corrupt"),
        (3, "queued", None),
        (4, "failed", "page_too_large"),
    ]
    assert all(page.error_message for page in pages if page.state == "failed")
    assert store.exists(pages[0].image_key) and not store.exists(pages[1].image_key)
    with sessions() as session:
        document = session.get(Document, document_id)
        assert document is not None
        assert (document.state, document.page_count, document.pages_total) == ("processing", 4, 4)

    for page_no in (1, 3):
        with sessions.begin() as session:
            claim = claim_page(session, document_id, page_no, owner="test", lease_s=60)
            assert claim is not None
        with unit_of_work(sessions) as uow:
            record_page_outcome(uow, claim, builders.page_outcome(mode="tiny"))

    finished = api.get(f"/v1/documents/{document_id}", headers=auth).json()
    assert finished["state"] == "partial", finished
    result = api.get(f"/v1/documents/{document_id}/result", headers=auth, params={"format": "json"}).json()
    assert result["failed_pages"] == [2, 4]
    errors = {page["page_no"]: (page["error"] or {}).get("code") for page in result["pages"]}
    assert errors == {1: None, 2: "corrupt", 3: None, 4: "page_too_large"}
    page = api.get(f"/v1/documents/{document_id}/pages/2", headers=auth).json()
    assert page["state"] == "failed" and page["error"]["code"] == "corrupt"
    assert page["image_url"] is None  # never drawn: no link to an image that does not exist
    drawn = api.get(f"/v1/documents/{document_id}/pages/1", headers=auth).json()
    assert httpx.get(drawn["image_url"]).status_code == 200
    assert_invariants(sessions, [document_id])
