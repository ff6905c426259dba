"""Model choice in batches and watches (real API in-process, real intake code, a fleet serving both
families): a manifest line's own model over its batch's, the batch's over the tenant's default,
the tenant's over the fleet's; refusals when a batch or watch is created."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from minio import Minio
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from scriptorium.db.models import Document, Tenant
from scriptorium.model_families import ModelFamily
from scriptorium.settings import ModelsSettings, Settings
from scriptorium.storage import ObjectStore
from tests.integration.batches.conftest import (
    SOURCE,
    documents_of,
    finish_document,
    items_of,
    png,
    put_object,
)
from tests.integration.batches.test_watches import minio_notification
from tests.support import builders
from worker.ingestion import expand_batch, ingest_watch
from worker.runtime import WorkerRuntime

pytestmark = pytest.mark.integration

DEEPSEEK, UNLIMITED = ModelFamily.DEEPSEEK_OCR.value, ModelFamily.UNLIMITED_OCR.value


@pytest.fixture(scope="module")
def both_models(intake_settings: Settings) -> Settings:
    """Both families served; a document naming none, whose tenant names none, gets unlimited-ocr."""
    return intake_settings.model_copy(
        update={
            "models": ModelsSettings(
                served=[ModelFamily.DEEPSEEK_OCR, ModelFamily.UNLIMITED_OCR],
                default=ModelFamily.UNLIMITED_OCR,
            )
        }
    )


@pytest.fixture(scope="module")
def models_api(both_models: Settings, store: ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(both_models)) as client:
        yield client


@pytest.fixture(scope="module")
def models_runtime(both_models: Settings) -> Iterator[WorkerRuntime]:
    built = WorkerRuntime.build(both_models)
    yield built
    built.close()


def _tenant(sessions: sessionmaker[Session], default_model: str | None) -> tuple[Tenant, dict[str, str]]:
    with sessions.begin() as session:
        issued = builders.tenant(session)
        issued.tenant.default_model = default_model
    return issued.tenant, {"Authorization": f"Bearer {issued.key}"}


def _model_of(sessions: sessionmaker[Session], document_id: uuid.UUID | str | None) -> str:
    with sessions() as session:
        document = session.get(Document, uuid.UUID(str(document_id)))
        assert document is not None
        return document.model


def _batch(api: TestClient, headers: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    response = api.post("/v1/batches", headers=headers, **kwargs)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_manifest_line_s_model_wins_then_the_batch_s_then_the_tenant_s(
    models_api: TestClient,
    models_runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
    source_client: Minio,
    source_bucket: str,
) -> None:
    _, headers = _tenant(sessions, default_model=DEEPSEEK)
    base = f"models-{uuid.uuid4().hex[:6]}"
    for name in ("own", "plain", "unknown"):
        put_object(source_client, source_bucket, f"{base}/{name}.png", png(f"{name} {uuid.uuid4()}"))
    uri = f"s3://{SOURCE}/{source_bucket}/{base}"
    lines = [
        {"uri": f"{uri}/own.png", "model": UNLIMITED},
        {"uri": f"{uri}/plain.png"},
        {"uri": f"{uri}/unknown.png", "model": "tesseract"},
    ]
    manifest = "\n".join(json.dumps(line) for line in lines).encode()

    inherits = _batch(models_api, headers, files={"manifest": ("m.jsonl", io.BytesIO(manifest))})
    expand_batch(models_runtime, uuid.UUID(inherits["id"]))

    own, plain, unknown = items_of(sessions, inherits["id"])
    assert _model_of(sessions, own.document_id) == UNLIMITED  # the line's own
    assert _model_of(sessions, plain.document_id) == DEEPSEEK  # the tenant's default
    assert (unknown.state, unknown.error_code) == ("rejected", "invalid_options")
    assert unknown.error_message is not None and unknown.error_message.startswith("unknown_model:")
    assert "model" not in inherits["options"]

    chosen = _batch(
        models_api, headers, files={"manifest": ("m.jsonl", io.BytesIO(manifest))}, data={"model": UNLIMITED}
    )
    expand_batch(models_runtime, uuid.UUID(chosen["id"]))
    own, plain, _ = items_of(sessions, chosen["id"])
    assert _model_of(sessions, plain.document_id) == UNLIMITED  # the batch's, over the tenant's
    assert chosen["options"]["model"] == UNLIMITED
    shown = models_api.get(f"/v1/batches/{chosen['id']}", headers=headers).json()
    assert shown["options"]["model"] == UNLIMITED


def test_files_uploaded_into_an_open_batch_get_its_model_or_the_fleet_s(
    models_api: TestClient, sessions: sessionmaker[Session]
) -> None:
    _, headers = _tenant(sessions, default_model=None)
    for batch_model, expected in ((DEEPSEEK, DEEPSEEK), (None, UNLIMITED)):
        batch = _batch(models_api, headers, data={"model": batch_model} if batch_model else {})
        uploaded = models_api.post(
            f"/v1/batches/{batch['id']}/documents",
            headers=headers,
            files={"file": ("a.png", io.BytesIO(png(f"open {uuid.uuid4()}")))},
        )
        assert uploaded.status_code == 202, uploaded.text
        assert uploaded.json()["model"] == expected
        assert _model_of(sessions, uploaded.json()["id"]) == expected


def test_a_retried_document_keeps_its_model(models_api: TestClient, sessions: sessionmaker[Session]) -> None:
    _, headers = _tenant(sessions, default_model=None)
    batch = _batch(models_api, headers, data={"model": UNLIMITED})  # not the column's default
    uploaded = models_api.post(
        f"/v1/batches/{batch['id']}/documents",
        headers=headers,
        files={"file": ("a.png", io.BytesIO(png(f"retry {uuid.uuid4()}")))},
    )
    assert uploaded.status_code == 202, uploaded.text
    assert models_api.post(f"/v1/batches/{batch['id']}/close", headers=headers).status_code == 200
    finish_document(sessions, uuid.UUID(uploaded.json()["id"]), fail=True)

    retried = models_api.post(f"/v1/batches/{batch['id']}/retry-failed", headers=headers)
    assert retried.status_code == 202 and retried.json()["retried_documents"] == 1
    first, second = documents_of(sessions, batch["id"])
    assert first.state == "failed" and (second.state, second.model) == ("received", UNLIMITED)


def test_a_batch_naming_an_unknown_model_is_refused_when_created(
    models_api: TestClient, sessions: sessionmaker[Session]
) -> None:
    _, headers = _tenant(sessions, default_model=None)
    refused = models_api.post("/v1/batches", headers=headers, data={"model": "deepseek-ocr-2"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "unknown_model"
    assert "deepseek-ocr, unlimited-ocr" in refused.json()["error"]["message"]


def test_a_watch_keeps_its_model_and_its_documents_are_read_with_it(
    models_api: TestClient,
    models_runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
    source_client: Minio,
    source_bucket: str,
) -> None:
    _, headers = _tenant(sessions, default_model=UNLIMITED)
    prefix = f"watched-models-{uuid.uuid4().hex[:6]}/"
    watch = {"source": SOURCE, "bucket": source_bucket, "prefix": prefix}
    refused = models_api.post("/v1/watches", headers=headers, json={**watch, "options": {"model": "ocr"}})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "unknown_model"

    created = models_api.post("/v1/watches", headers=headers, json={**watch, "options": {"model": DEEPSEEK}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["options"] == {"model": DEEPSEEK}
    assert models_api.get(f"/v1/watches/{body['id']}", headers=headers).json()["options"]["model"] == DEEPSEEK

    key = f"{prefix}page.png"
    etag = put_object(source_client, source_bucket, key, png(f"watched {uuid.uuid4()}"))
    notified = models_api.post(
        f"/v1/watches/{body['id']}/notifications",
        json=minio_notification(source_bucket, key, etag),
        headers={"Authorization": f"Bearer {body['token']}"},
    )
    assert notified.status_code == 200
    assert ingest_watch(models_runtime, uuid.UUID(body["id"])) == 1
    [document] = models_api.get("/v1/documents", headers=headers).json()["items"]
    assert document["model"] == DEEPSEEK  # the watch's, over the tenant's unlimited-ocr


def test_batches_and_watches_naming_a_model_the_fleet_does_not_serve_are_refused(
    api: TestClient, sessions: sessionmaker[Session], source_bucket: str
) -> None:
    """``api`` runs with the default settings: deepseek-ocr alone is served."""
    _, headers = _tenant(sessions, default_model=None)
    batch = api.post("/v1/batches", headers=headers, data={"model": UNLIMITED})
    watch = api.post(
        "/v1/watches",
        headers=headers,
        json={"source": SOURCE, "bucket": source_bucket, "options": {"model": UNLIMITED}},
    )
    for refused in (batch, watch):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "model_not_served"
        assert "serves deepseek-ocr" in refused.json()["error"]["message"]
