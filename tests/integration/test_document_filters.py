"""GET /v1/documents filtered by batch and by file name (the console's documents page uses them)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from scriptorium.settings import Settings
from scriptorium.storage import ObjectStore
from tests.support import builders

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(settings: Settings, store: ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_documents_filter_by_batch_and_file_name(client: TestClient, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        auth = {"Authorization": f"Bearer {builders.tenant(session).key}"}

    def upload(name: str, url: str = "/v1/documents") -> str:
        response = client.post(url, headers=auth, files={"file": (name, io.BytesIO(name.encode()))})
        assert response.status_code == 202, response.text
        document_id: str = response.json()["id"]
        return document_id

    batch = client.post("/v1/batches", headers=auth, data={"name": "filters"}).json()["id"]
    in_batch = upload("Annual_Report 100%.pdf", f"/v1/batches/{batch}/documents")
    loose = upload("annualXreport.pdf")
    other = upload("minutes.pdf")

    def ids(**params: str) -> list[str]:
        response = client.get("/v1/documents", headers=auth, params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids(batch_id=batch) == [in_batch]
    assert ids(filename="ANNUAL") == [loose, in_batch]
    assert ids(filename="annual_") == [in_batch]  # _ and % are literal, not wildcards
    assert ids(filename="100%") == [in_batch]
    assert ids(filename="annual", batch_id=batch) == [in_batch]
    assert other in ids() and ids(filename="nothing-like-it") == []
