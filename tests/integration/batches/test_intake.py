"""Batch intake through the real API (in-process) and the real intake code on the worker side,
against real Postgres, Redis and S3; documents are finished through the product's transitions."""

from __future__ import annotations

import csv
import io
import json
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from minio import Minio
from sqlalchemy import func, update
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.batches.expansion import claim_intake, first_document_id, stalled_intake
from scriptorium.db.models import Batch, Document, Tenant
from scriptorium.dispatch import admit_and_dispatch
from scriptorium.storage import ObjectStore, raw_key
from tests.integration.batches.conftest import (
    MISSING_BUCKET,
    SOURCE,
    batch_events,
    batch_row,
    documents_of,
    finish_document,
    items_of,
    png,
    put_object,
    read_page,
    start_processing,
)
from tests.support import builders
from tests.support.invariants import assert_invariants
from tests.support.units import unit_of_work
from tests.unit.batches.conftest import tar_bytes, zip_bytes
from worker import ingestion as worker_ingestion
from worker.ingestion import expand_batch
from worker.runtime import WorkerRuntime

pytestmark = pytest.mark.integration
TenantKey = tuple[Tenant, dict[str, str]]


def _create(api: TestClient, headers: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    response = api.post("/v1/batches", headers=headers, **kwargs)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["Location"].endswith(f"/v1/batches/{body['id']}")
    return body


def _archive_batch(
    api: TestClient, headers: dict[str, str], name: str, data: bytes, **form: str
) -> dict[str, Any]:
    return _create(api, headers, files={"archive": (name, io.BytesIO(data))}, data=form)


def _report(api: TestClient, headers: dict[str, str], batch_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/batches/{batch_id}/report", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_archive_becomes_one_document_per_file_and_completes_once(
    api: TestClient,
    tenant_key: TenantKey,
    runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
    store: ObjectStore,
) -> None:
    _, headers = tenant_key
    pages = {f"scans/{i}.png": png(f"archive page {uuid.uuid4()}") for i in range(3)}
    archive = tar_bytes(pages, symlinks={"scans/link.png": "/etc/passwd"})
    created = _archive_batch(api, headers, "scans.tgz", archive, pages="1", metadata='{"box": 7}')
    assert created["state"] == "expanding" and created["kind"] == "archive"
    expand_batch(runtime, uuid.UUID(created["id"]))

    batch = api.get(f"/v1/batches/{created['id']}", headers=headers).json()
    assert batch["state"] == "running" and batch["progress"]["inputs_complete"]
    assert batch["inputs"] == {"ingested": 3, "skipped": 1} and batch["documents"] == {"received": 3}
    items = items_of(sessions, created["id"])
    assert [item.name for item in items] == ["scans/0.png", "scans/1.png", "scans/2.png", "scans/link.png"]
    documents = {document.id: document for document in documents_of(sessions, created["id"])}
    for item in items[:3]:
        document = documents[item.document_id]  # type: ignore[index]
        assert document.id == first_document_id(uuid.UUID(created["id"]), item.seq)
        assert store.get_bytes(document.raw_key) == pages[item.name]
        assert document.priority == "bulk" and document.page_selection == "1"
        assert document.client_metadata == {"box": 7} and document.prepare_dispatched_at is not None
    expand_batch(runtime, uuid.UUID(created["id"]))  # a duplicate message changes nothing
    assert len(documents_of(sessions, created["id"])) == 3

    for document_id in documents:
        finish_document(sessions, document_id, fail=document_id == items[1].document_id)
    [event] = batch_events(sessions, created["id"])
    assert event.type == "batch.completed" and event.batch_round == 1 and event.document_id is None
    assert event.payload["outcomes"]["done"] == 2 and event.payload["outcomes"]["failed"] == 1
    assert_invariants(sessions, documents)

    report = _report(api, headers, created["id"])
    assert report["summary"]["accounted"] and report["summary"]["final"]
    assert report["summary"]["inputs"] == 4 and report["summary"]["state"] == "completed"
    outcomes = [(row["input"], row["outcome"], row["reason"]) for row in report["items"]]
    assert outcomes == [
        ("scans/0.png", "done", None),
        ("scans/1.png", "failed", "engine_error"),
        ("scans/2.png", "done", None),
        ("scans/link.png", "skipped", "not_a_regular_file"),
    ]
    failed = api.get(f"/v1/batches/{created['id']}/documents", headers=headers, params={"state": "failed"})
    assert [d["id"] for d in failed.json()["items"]] == [str(items[1].document_id)]


HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "path-traversal": (
        lambda: zip_bytes({"fine.png": b"png", "../../etc/cron.d/evil": b"* * * * * root sh"}),
        "archive_unsafe_path",
    ),
    "zip-bomb": (
        lambda: zip_bytes({"a.png": b"a", "zeros.png": bytes(16 * 1024 * 1024)}),
        "archive_compression_ratio",
    ),
    "gzip-bomb": (
        lambda: tar_bytes({"a.png": b"a", "zeros.png": bytes(16 * 1024 * 1024)}),
        "archive_compression_ratio",
    ),
}


@pytest.mark.parametrize("hostile", list(HOSTILE))
def test_hostile_archives_are_refused_with_a_reason_and_leave_nothing(
    api: TestClient,
    tenant_key: TenantKey,
    runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
    store: ObjectStore,
    hostile: str,
) -> None:
    tenant, headers = tenant_key
    build, reason = HOSTILE[hostile]
    created = _archive_batch(api, headers, "upload.bin", build())
    expand_batch(runtime, uuid.UUID(created["id"]))
    batch = api.get(f"/v1/batches/{created['id']}", headers=headers).json()
    assert batch["state"] == "failed" and batch["error"]["code"] == reason, batch
    assert batch["error"]["message"]
    assert documents_of(sessions, created["id"]) == [] and items_of(sessions, created["id"]) == []
    assert not store.exists(raw_key(tenant.id, first_document_id(uuid.UUID(created["id"]), 1)))
    assert [event.type for event in batch_events(sessions, created["id"])] == ["batch.failed"]


def test_what_is_not_an_archive_is_refused_at_upload(api: TestClient, tenant_key: TenantKey) -> None:
    _, headers = tenant_key
    response = api.post(
        "/v1/batches", headers=headers, files={"archive": ("a.pdf", io.BytesIO(b"%PDF-1.7 nope"))}
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "archive_unsupported"
    both = api.post(
        "/v1/batches",
        headers=headers,
        files={"archive": ("a.zip", io.BytesIO(zip_bytes({"a": b"a"})))},
        data={"prefix": f"s3://{SOURCE}/b/p"},
    )
    assert both.status_code == 422


def test_a_prefix_is_listed_page_by_page_after_its_marker(
    api: TestClient,
    tenant_key: TenantKey,
    runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
    store: ObjectStore,
    source_client: Minio,
    source_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, headers = tenant_key
    prefix = f"prefix-{uuid.uuid4().hex[:6]}/"
    objects = {f"{prefix}{i:02d}.png": png(f"prefix page {uuid.uuid4()}") for i in range(5)}
    for key, data in objects.items():
        put_object(source_client, source_bucket, key, data)
    put_object(source_client, source_bucket, f"elsewhere-{uuid.uuid4().hex[:6]}/x.png", b"not listed")
    monkeypatch.setattr(worker_ingestion, "DISCOVERY_CHUNK", 2)
    created = _create(
        api, headers, data={"prefix": f"s3://{SOURCE}/{source_bucket}/{prefix}", "name": "scans"}
    )
    assert created["source"] == {"source": SOURCE, "bucket": source_bucket, "prefix": prefix}
    expand_batch(runtime, uuid.UUID(created["id"]))
    items = items_of(sessions, created["id"])
    assert [item.name for item in items] == sorted(objects) and [item.seq for item in items] == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert batch_row(sessions, created["id"]).intake_marker == sorted(objects)[-1]
    for item in items:
        assert item.state == "ingested" and item.origin["etag"]
        with sessions() as session:
            document = session.get(Document, item.document_id)
            assert document is not None and store.get_bytes(document.raw_key) == objects[item.name]
    assert batch_row(sessions, created["id"]).state == "running"


def test_a_prefix_of_an_unknown_source_or_bucket_is_refused(
    api: TestClient, tenant_key: TenantKey, runtime: WorkerRuntime
) -> None:
    _, headers = tenant_key
    response = api.post("/v1/batches", headers=headers, data={"prefix": "s3://nowhere/bucket/p/"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "unknown_source"
    created = _create(api, headers, data={"prefix": f"s3://{SOURCE}/{MISSING_BUCKET}/p/"})
    expand_batch(runtime, uuid.UUID(created["id"]))
    batch = api.get(f"/v1/batches/{created['id']}", headers=headers).json()
    assert batch["state"] == "failed" and batch["error"]["code"] == "source_bucket_missing"


def test_a_manifest_reports_every_line(
    api: TestClient,
    tenant_key: TenantKey,
    runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
    source_client: Minio,
    source_bucket: str,
) -> None:
    _, headers = tenant_key
    base = f"manifest-{uuid.uuid4().hex[:6]}"
    put_object(source_client, source_bucket, f"{base}/a.png", png(f"manifest a {uuid.uuid4()}"))
    put_object(source_client, source_bucket, f"{base}/b.png", png(f"manifest b {uuid.uuid4()}"))
    lines = [
        {"uri": f"s3://{SOURCE}/{source_bucket}/{base}/a.png", "pages": "1", "metadata": {"line": 1}},
        {"uri": f"s3://{SOURCE}/{source_bucket}/{base}/b.png", "mode": "small", "priority": "interactive"},
        "this line is not json",
        {"uri": f"s3://{SOURCE}/{source_bucket}/{base}/missing.png"},
        {"uri": f"s3://elsewhere/{source_bucket}/{base}/a.png"},
    ]
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n\n"
    created = _create(
        api,
        headers,
        files={"manifest": ("list.jsonl", io.BytesIO(text.encode()))},
        data={"metadata": '{"run": 2}'},
    )
    expand_batch(runtime, uuid.UUID(created["id"]))
    items = items_of(sessions, created["id"])
    assert [(item.state, item.error_code) for item in items] == [
        ("ingested", None),
        ("ingested", None),
        ("rejected", "invalid_manifest_line"),
        ("rejected", "source_object_missing"),
        ("rejected", "unknown_source"),
    ]
    with sessions() as session:
        first = session.get(Document, items[0].document_id)
        second = session.get(Document, items[1].document_id)
        assert first is not None and second is not None
        assert first.client_metadata == {"run": 2, "line": 1} and first.page_selection == "1"
        assert second.routing_policy["mode"] == "small" and second.priority == "interactive"
    report = _report(api, headers, created["id"])
    assert (
        report["summary"]["outcomes"]["rejected"] == 3 and report["summary"]["outcomes"]["in_progress"] == 2
    )


def test_cancelling_a_batch_cancels_its_documents_and_emits_one_event(
    api: TestClient, tenant_key: TenantKey, runtime: WorkerRuntime, sessions: sessionmaker[Session]
) -> None:
    _, headers = tenant_key
    archive = zip_bytes({f"{i}.png": png(f"cancel {uuid.uuid4()}") for i in range(3)})
    created = _archive_batch(api, headers, "c.zip", archive)
    expand_batch(runtime, uuid.UUID(created["id"]))
    [first, *_] = documents_of(sessions, created["id"])
    start_processing(sessions, first.id)
    response = api.delete(f"/v1/batches/{created['id']}", headers=headers)
    assert response.status_code == 202 and response.json()["state"] == "cancelled"
    assert {d.state for d in documents_of(sessions, created["id"])} == {"cancelled"}
    assert [e.type for e in batch_events(sessions, created["id"])] == ["batch.cancelled"]
    assert api.delete(f"/v1/batches/{created['id']}", headers=headers).status_code == 409
    assert _report(api, headers, created["id"])["summary"]["outcomes"]["cancelled"] == 3


def test_documents_finishing_at_once_complete_the_batch_once(
    api: TestClient, tenant_key: TenantKey, runtime: WorkerRuntime, sessions: sessionmaker[Session]
) -> None:
    _, headers = tenant_key
    archive = zip_bytes({f"{i}.png": png(f"race {uuid.uuid4()}") for i in range(8)})
    created = _archive_batch(api, headers, "race.zip", archive)
    expand_batch(runtime, uuid.UUID(created["id"]))
    documents = documents_of(sessions, created["id"])
    for document in documents:
        start_processing(sessions, document.id)
    barrier = threading.Barrier(len(documents))
    errors: list[BaseException] = []

    def finish(document_id: uuid.UUID) -> None:
        barrier.wait()
        try:
            read_page(sessions, document_id)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=finish, args=(d.id,)) for d in documents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [e.type for e in batch_events(sessions, created["id"])] == ["batch.completed"]
    assert_invariants(sessions, [d.id for d in documents])


def test_retry_failed_makes_new_attempts_keeps_history_and_completes_the_next_round(
    api: TestClient, tenant_key: TenantKey, runtime: WorkerRuntime, sessions: sessionmaker[Session]
) -> None:
    _, headers = tenant_key
    archive = zip_bytes({f"{i}.png": png(f"retry {uuid.uuid4()}") for i in range(3)})
    created = _archive_batch(api, headers, "retry.zip", archive)
    batch_id = created["id"]
    expand_batch(runtime, uuid.UUID(batch_id))
    first_round = documents_of(sessions, batch_id)
    for index, document in enumerate(first_round):
        finish_document(sessions, document.id, fail=index > 0)
    assert batch_row(sessions, batch_id).state == "completed"

    response = api.post(f"/v1/batches/{batch_id}/retry-failed", headers=headers)
    assert response.status_code == 202, response.text
    body = response.json()
    assert (
        body["retried_documents"] == 2 and body["batch"]["round"] == 2 and body["batch"]["state"] == "running"
    )
    items = items_of(sessions, batch_id)
    retried = [item for item in items if item.history]
    assert len(retried) == 2
    for item in retried:
        [previous] = item.history
        assert previous["state"] == "failed" and previous["error_code"] == "engine_error"
        with sessions() as session:
            old = session.get(Document, uuid.UUID(previous["document_id"]))
            new = session.get(Document, item.document_id)
            assert old is not None and new is not None
            assert old.state == "failed" and new.state == "received" and new.raw_key == old.raw_key
            finish_document(sessions, new.id)
    events = batch_events(sessions, batch_id)
    assert [(e.type, e.batch_round) for e in events] == [("batch.completed", 1), ("batch.completed", 2)]
    report = _report(api, headers, batch_id)
    assert report["summary"]["outcomes"]["done"] == 3
    assert sorted(row["attempts"] for row in report["items"]) == [1, 2, 2]
    csv_text = api.get(f"/v1/batches/{batch_id}/report", headers=headers, params={"format": "csv"}).text
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert len(rows) == 3 and all(row["outcome"] == "done" for row in rows)
    assert sum(bool(row["previous_documents"]) for row in rows) == 2
    assert_invariants(sessions, [d.id for d in documents_of(sessions, batch_id)])
    nothing = api.post(f"/v1/batches/{batch_id}/retry-failed", headers=headers).json()
    assert nothing["retried_documents"] == 0 and nothing["batch"]["round"] == 2


def test_an_open_batch_takes_uploads_until_closed(
    api: TestClient, tenant_key: TenantKey, sessions: sessionmaker[Session]
) -> None:
    _, headers = tenant_key
    key = {"Idempotency-Key": f"cli-{uuid.uuid4()}"}
    created = _create(api, {**headers, **key}, data={"name": "uploads", "priority": "interactive"})
    replay = api.post("/v1/batches", headers={**headers, **key}, data={"name": "uploads"})
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.json()["id"] == created["id"]
    assert created["state"] == "open"
    for name in ("a/1.png", "a/2.png"):
        response = api.post(
            f"/v1/batches/{created['id']}/documents",
            headers=headers,
            files={"file": (name.rsplit("/", 1)[-1], io.BytesIO(png(f"upload {uuid.uuid4()}")))},
            data={"name": name},
        )
        assert response.status_code == 202, response.text
        assert response.json()["state"] == "received"
    items = api.get(f"/v1/batches/{created['id']}/items", headers=headers).json()["items"]
    assert [(i["seq"], i["name"], i["state"]) for i in items] == [
        (1, "a/1.png", "ingested"),
        (2, "a/2.png", "ingested"),
    ]
    assert all(len(i["sha256"]) == 64 for i in items)
    assert {d.priority for d in documents_of(sessions, created["id"])} == {"interactive"}
    closed = api.post(f"/v1/batches/{created['id']}/close", headers=headers)
    assert closed.status_code == 200 and closed.json()["state"] == "running"
    late = api.post(
        f"/v1/batches/{created['id']}/documents", headers=headers, files={"file": ("x.png", io.BytesIO(b"x"))}
    )
    assert late.status_code == 409 and late.json()["error"]["code"] == "batch_not_open"
    for document in documents_of(sessions, created["id"]):
        finish_document(sessions, document.id)
    assert batch_row(sessions, created["id"]).state == "completed"


def test_another_tenant_sees_no_batch(
    api: TestClient, tenant_key: TenantKey, sessions: sessionmaker[Session]
) -> None:
    _, headers = tenant_key
    created = _create(api, headers, data={"name": "private"})
    with sessions.begin() as session:
        other = {"Authorization": f"Bearer {builders.tenant(session).key}"}
    for path in ("", "/documents", "/items", "/report"):
        assert api.get(f"/v1/batches/{created['id']}{path}", headers=other).status_code == 404
    assert api.delete(f"/v1/batches/{created['id']}", headers=other).status_code == 404


def test_identical_inputs_are_read_once_and_reported_as_duplicates(
    api: TestClient, tenant_key: TenantKey, runtime: WorkerRuntime, sessions: sessionmaker[Session]
) -> None:
    _, headers = tenant_key
    same = png(f"same {uuid.uuid4()}")
    archive = zip_bytes({"a.png": same, "b.png": png(f"other {uuid.uuid4()}"), "copy-of-a.png": same})
    created = _archive_batch(api, headers, "dupes.zip", archive)
    expand_batch(runtime, uuid.UUID(created["id"]))
    items = items_of(sessions, created["id"])
    with sessions() as session:
        documents = {item.name: session.get(Document, item.document_id) for item in items}
    original, copy = documents["a.png"], documents["copy-of-a.png"]
    assert original is not None and copy is not None and copy.duplicate_of == original.id
    finish_document(sessions, original.id)
    finish_document(sessions, documents["b.png"].id)  # type: ignore[union-attr]
    with unit_of_work(sessions) as uow:  # what the sweeper or the next dispatch does
        admit_and_dispatch(uow, depth=16, lost_after_s=60)
    report = _report(api, headers, created["id"])
    assert [(row["input"], row["outcome"], row["duplicate_of"]) for row in report["items"]] == [
        ("a.png", "done", None),
        ("b.png", "done", None),
        ("copy-of-a.png", "duplicate", str(original.id)),
    ]
    assert report["summary"]["state"] == "completed"
    assert [e.type for e in batch_events(sessions, created["id"])] == ["batch.completed"]
    assert_invariants(sessions, [d.id for d in documents.values() if d is not None])


def test_the_sweeper_resends_lost_intake_and_gives_up_on_runs_that_keep_dying(
    api: TestClient, tenant_key: TenantKey, sessions: sessionmaker[Session]
) -> None:
    _, headers = tenant_key
    created = _archive_batch(api, headers, "lost.zip", zip_bytes({"a.png": png(f"lost {uuid.uuid4()}")}))
    batch_id = uuid.UUID(created["id"])

    def age(**values: Any) -> None:
        with sessions.begin() as session:
            session.execute(update(Batch).where(Batch.id == batch_id).values(**values))

    def sweep() -> tuple[list[uuid.UUID], list[Any]]:
        with sessions.begin() as session:
            resend, events = stalled_intake(session, lost_after_s=60, max_attempts=3)
            return [b for b in resend if b == batch_id], [e for e in events if e.batch_id == batch_id]

    assert sweep() == ([], [])  # just sent: not lost yet
    age(intake_dispatched_at=func.now() - timedelta(minutes=5))
    assert sweep() == ([batch_id], [])  # the message was lost: send it again
    for attempt in range(1, 4):
        with sessions.begin() as session:
            assert claim_intake(session, batch_id, lease_s=60, max_attempts=3) is not None
            assert claim_intake(session, batch_id, lease_s=60, max_attempts=3) is None  # one run at a time
        age(intake_lease_expires_at=func.now() - timedelta(seconds=1))  # the run died
        resend, events = sweep()
        assert (resend, len(events)) == (([batch_id], 0) if attempt < 3 else ([], 1))
    batch = batch_row(sessions, batch_id)
    assert batch.state == "failed" and batch.error_code == "intake_exhausted"
    assert [e.type for e in batch_events(sessions, batch_id)] == ["batch.failed"]
