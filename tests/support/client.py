"""Talking to a running API the way a client would."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from tests.support import builders
from tests.support.fleet import Fleet, wait_until

TERMINAL = {"completed", "partial", "failed", "cancelled"}


class ApiClient:
    def __init__(self, fleet: Fleet, key: str) -> None:
        self.fleet = fleet
        self.http = httpx.Client(
            base_url=fleet.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )

    @classmethod
    def for_new_tenant(cls, fleet: Fleet, sessions: sessionmaker[Session]) -> ApiClient:
        with sessions.begin() as session:
            key = builders.tenant(session).key
        return cls(fleet, key)

    def upload(self, path: Path, **form: str) -> dict[str, Any]:
        with path.open("rb") as handle:
            response = self.http.post("/v1/documents", files={"file": (path.name, handle)}, data=form)
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body

    def document(self, document_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get(f"/v1/documents/{document_id}").json()
        return body

    def wait_terminal(self, document_id: str, timeout: float = 120) -> dict[str, Any]:
        body: dict[str, Any] = wait_until(
            lambda: (doc := self.document(document_id))["state"] in TERMINAL and doc,
            timeout=timeout,
            what=f"document {document_id} to finish",
            fleet=self.fleet,
        )
        return body

    def result_json(self, document_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/documents/{document_id}/result", params={"format": "json"})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def result_markdown(self, document_id: str) -> httpx.Response:
        return self.http.get(f"/v1/documents/{document_id}/result", params={"format": "markdown"})

    def page(self, document_id: str, page_no: int) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get(f"/v1/documents/{document_id}/pages/{page_no}").json()
        return body


def ids(*documents: dict[str, Any]) -> list[uuid.UUID]:
    return [uuid.UUID(document["id"]) for document in documents]
