"""Watched prefixes: bucket notifications posted to the API, and the polling fallback, each object
ingested once however many times and ways it is seen (real API in-process, real intake code)."""

from __future__ import annotations

import time
import urllib.parse
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from minio import Minio
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, Tenant, WatchObject
from scriptorium.storage import ObjectStore
from tests.integration.batches.conftest import SOURCE, png, put_object
from worker.ingestion import ingest_watch, poll_watches
from worker.runtime import WorkerRuntime

pytestmark = pytest.mark.integration


def minio_notification(
    bucket: str, key: str, etag: str, event: str = "s3:ObjectCreated:Put"
) -> dict[str, Any]:
    """A notification as MinIO's webhook target posts it (keys URL-encoded)."""
    encoded = urllib.parse.quote_plus(key, safe="/")
    return {
        "EventName": event,
        "Key": f"{bucket}/{key}",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "eventName": event,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": encoded, "size": 10, "eTag": etag, "sequencer": "17A"},
                },
            }
        ],
    }


def _objects(sessions: sessionmaker[Session], watch_id: str) -> list[WatchObject]:
    with sessions() as session:
        return list(
            session.execute(
                select(WatchObject)
                .where(WatchObject.watch_id == uuid.UUID(watch_id))
                .order_by(WatchObject.id)
            ).scalars()
        )


def test_an_object_seen_by_notification_and_by_polling_becomes_one_document(
    api: TestClient,
    tenant_key: tuple[Tenant, dict[str, str]],
    runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
    store: ObjectStore,
    source_client: Minio,
    source_bucket: str,
) -> None:
    _, headers = tenant_key
    prefix = f"watched-{uuid.uuid4().hex[:6]}/"
    response = api.post(
        "/v1/watches",
        headers=headers,
        json={"source": SOURCE, "bucket": source_bucket, "prefix": prefix, "options": {"metadata": {"w": 1}}},
    )
    assert response.status_code == 201, response.text
    watch = response.json()
    token = watch["token"]
    assert token.startswith("wt_") and watch["notification_url"].endswith(
        f"/v1/watches/{watch['id']}/notifications"
    )
    assert "token" not in api.get(f"/v1/watches/{watch['id']}", headers=headers).json()

    key = f"{prefix}scan one.png"
    data = png(f"watched {uuid.uuid4()}")
    etag = put_object(source_client, source_bucket, key, data)
    url = f"/v1/watches/{watch['id']}/notifications"
    body = minio_notification(source_bucket, key, etag)
    assert api.post(url, json=body).status_code == 401
    assert api.post(url, json=body, headers={"Authorization": "Bearer wt_wrong"}).status_code == 401
    auth = {"Authorization": f"Bearer {token}"}
    first = api.post(url, json=body, headers=auth)
    assert first.status_code == 200 and first.json() == {"objects": 1, "new": 1}
    assert api.post(url, json=body, headers=auth).json() == {"objects": 1, "new": 0}  # MinIO retried
    outside = minio_notification(source_bucket, f"elsewhere/{key}", etag)
    assert api.post(url, json=outside, headers=auth).json() == {"objects": 0, "new": 0}

    assert ingest_watch(runtime, uuid.UUID(watch["id"])) == 1
    poll_watches(runtime)  # polling lists the same object: it is only noted
    [seen] = _objects(sessions, watch["id"])
    assert seen.key == key and seen.etag == etag and seen.state == "ingested"
    assert seen.notified_at is not None and seen.listed_at is not None
    with sessions() as session:
        document = session.get(Document, seen.document_id)
        assert document is not None and document.state == "received" and document.batch_id is None
        assert store.get_bytes(document.raw_key) == data and document.client_metadata == {"w": 1}
        assert document.filename == "scan one.png"

    second_key = f"{prefix}scan two.png"
    put_object(source_client, source_bucket, second_key, png(f"polled {uuid.uuid4()}"))
    time.sleep(1.1)  # the watch is due again (interval 1 s in these settings)
    poll_watches(runtime)  # no notification for this one: polling finds it after the marker
    objects = _objects(sessions, watch["id"])
    assert [(o.key, o.state, o.notified_at is None) for o in objects] == [
        (key, "ingested", False),
        (second_key, "ingested", True),
    ]
    listed = api.get(f"/v1/watches/{watch['id']}", headers=headers).json()
    assert listed["objects"] == {"ingested": 2} and listed["poll_marker"] == second_key

    rescanned = api.post(f"/v1/watches/{watch['id']}/rescan", headers=headers).json()
    assert rescanned["poll_marker"] is None
    poll_watches(runtime)
    assert len(_objects(sessions, watch["id"])) == 2  # listing everything again ingests nothing twice
    with sessions() as session:
        ids = [o.document_id for o in _objects(sessions, watch["id"])]
        assert len(set(ids)) == 2
        assert len(list(session.execute(select(Document.id).where(Document.id.in_(ids))).scalars())) == 2


def test_a_watch_needs_a_source_the_tenant_may_use(
    api: TestClient, tenant_key: tuple[Tenant, dict[str, str]], source_bucket: str
) -> None:
    _, headers = tenant_key
    response = api.post("/v1/watches", headers=headers, json={"source": "nowhere", "bucket": source_bucket})
    assert response.status_code == 422 and response.json()["error"]["code"] == "unknown_source"
    bad = api.post(
        "/v1/watches",
        headers=headers,
        json={"source": SOURCE, "bucket": source_bucket, "options": {"mode": "enormous"}},
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_policy"


def test_a_disabled_or_deleted_watch_takes_nothing(
    api: TestClient,
    tenant_key: tuple[Tenant, dict[str, str]],
    sessions: sessionmaker[Session],
    source_bucket: str,
) -> None:
    _, headers = tenant_key
    watch = api.post("/v1/watches", headers=headers, json={"source": SOURCE, "bucket": source_bucket}).json()
    api.patch(f"/v1/watches/{watch['id']}", headers=headers, json={"enabled": False})
    auth = {"Authorization": f"Bearer {watch['token']}"}
    url = f"/v1/watches/{watch['id']}/notifications"
    assert (
        api.post(url, json=minio_notification(source_bucket, "a.png", "e1"), headers=auth).json()["new"] == 0
    )
    assert _objects(sessions, watch["id"]) == []
    assert api.delete(f"/v1/watches/{watch['id']}", headers=headers).status_code == 204
    assert (
        api.post(url, json=minio_notification(source_bucket, "a.png", "e1"), headers=auth).status_code == 401
    )
    assert api.get(f"/v1/watches/{watch['id']}", headers=headers).status_code == 404
