"""Intake that must lose nothing and leave nothing stuck: hostile manifest lines and keys, archives
at the entry limit, runs that fail, and what cancelled or failed batches leave in storage."""

from __future__ import annotations

import io
import json
import stat
import uuid
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from minio import Minio
from sqlalchemy import func, update
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.batches.expansion import first_document_id
from scriptorium.db.models import Batch, Tenant
from scriptorium.settings import IntakeSettings
from scriptorium.storage import ObjectStore, raw_key
from tests.integration.batches.conftest import (
    SOURCE,
    batch_events,
    batch_row,
    documents_of,
    items_of,
    png,
    put_object,
)
from tests.unit.batches.conftest import zip_bytes
from worker import ingestion as worker_ingestion
from worker.ingestion import INTAKE_ATTEMPTS, expand_batch
from worker.runtime import WorkerRuntime
from worker.sweeper import run_sweep

pytestmark = pytest.mark.integration
TenantKey = tuple[Tenant, dict[str, str]]


def _create(api: TestClient, headers: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    response = api.post("/v1/batches", headers=headers, **kwargs)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def test_hostile_manifest_lines_are_rejected_one_by_one_and_the_rest_is_ingested(
    api: TestClient,
    tenant_key: TenantKey,
    runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
    source_client: Minio,
    source_bucket: str,
) -> None:
    _, headers = tenant_key
    base = f"hostile-{uuid.uuid4().hex[:6]}"
    put_object(source_client, source_bucket, f"{base}/first.png", png(f"first {uuid.uuid4()}"))
    put_object(source_client, source_bucket, f"{base}/last.png", png(f"last {uuid.uuid4()}"))
    uri = f"s3://{SOURCE}/{source_bucket}/"
    hostile_keys = [
        f"{base}/nul\x00.png",  # a NUL inside the key
        f"{base}/../escape.png",  # a climbing segment
        f"{base}/./here.png",  # a dot segment
        f"/{base}/absolute.png",  # an absolute key
        f"{base}//empty-segment.png",  # an empty segment
        f"{base}/{'k' * 1100}.png",  # longer than any S3 key
        f"{base}/bell\x07.png",  # a control character
        f"{base}/directory/",  # a prefix, not an object
    ]
    lines = [
        json.dumps({"uri": f"{uri}{base}/first.png"}),
        *(json.dumps({"uri": f"{uri}{key}"}) for key in hostile_keys),
        json.dumps({"uri": f"{uri}{base}/first.png", "metadata": {"note": "nul \x00 inside"}}),
        '{"uri": "\x00 a raw NUL breaks the JSON"}',
        json.dumps({"uri": f"{uri}{base}/last.png"}),
    ]
    manifest = ("\n".join(lines) + "\n").encode()
    created = _create(api, headers, files={"manifest": ("list.jsonl", io.BytesIO(manifest))})
    expand_batch(runtime, uuid.UUID(created["id"]))

    items = items_of(sessions, created["id"])
    assert len(items) == len(lines)
    assert [(item.state, item.error_code) for item in items] == [
        ("ingested", None),
        *[("rejected", "invalid_manifest_line")] * (len(lines) - 2),
        ("ingested", None),
    ]
    for item in items[1:-1]:
        assert "\x00" not in item.name and item.error_message
    assert batch_row(sessions, created["id"]).state == "running"
    report = api.get(f"/v1/batches/{created['id']}/report", headers=headers)
    assert report.status_code == 200
    summary = report.json()["summary"]
    assert summary["accounted"] and summary["outcomes"]["rejected"] == len(lines) - 2
    csv_report = api.get(f"/v1/batches/{created['id']}/report", headers=headers, params={"format": "csv"})
    assert csv_report.status_code == 200 and csv_report.text.count("invalid_manifest_line") == len(lines) - 2


def _archive_at_the_entry_limit(files: int) -> bytes:
    """A zip of exactly the documented maximum of entries: a few pages, the rest symbolic links
    (each one an input of the report, skipped, so the test stores few objects)."""
    limit = IntakeSettings().archive_max_entries
    assert limit * 12 > 65_535  # one insert of every input would pass Postgres's bind-parameter limit
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for index in range(files):
            archive.writestr(f"pages/{index:05d}.png", png(f"limit {index} {uuid.uuid4()}"))
        for index in range(limit - files):
            link = zipfile.ZipInfo(f"links/{index:05d}.png")
            link.create_system = 3
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(link, "../pages/00000.png")
    return buffer.getvalue()


def test_an_archive_with_the_maximum_number_of_entries_is_ingested_whole(
    api: TestClient,
    tenant_key: TenantKey,
    runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
) -> None:
    _, headers = tenant_key
    limit = runtime.settings.intake.archive_max_entries
    assert limit == IntakeSettings().archive_max_entries  # the default, as documented
    data = _archive_at_the_entry_limit(files=5)
    created = _create(api, headers, files={"archive": ("limit.zip", io.BytesIO(data))})
    expand_batch(runtime, uuid.UUID(created["id"]))

    batch = batch_row(sessions, created["id"])
    assert batch.state == "running" and batch.inputs_total == limit and batch.inputs_complete
    items = items_of(sessions, created["id"])
    assert [item.seq for item in items] == list(range(1, limit + 1))
    assert sum(item.state == "ingested" for item in items) == 5
    assert sum(item.state == "skipped" for item in items) == limit - 5
    assert len(documents_of(sessions, created["id"])) == 5


def _staged_keys(tenant: Tenant, batch_id: uuid.UUID, count: int) -> list[str]:
    return [raw_key(tenant.id, first_document_id(batch_id, seq)) for seq in range(1, count + 1)]


def test_an_intake_run_that_keeps_failing_fails_the_batch_and_leaves_no_objects(
    api: TestClient,
    tenant_key: TenantKey,
    runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
    store: ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, headers = tenant_key
    archive = zip_bytes({f"{i}.png": png(f"failing {uuid.uuid4()}") for i in range(3)})
    created = _create(api, headers, files={"archive": ("f.zip", io.BytesIO(archive))})
    batch_id = uuid.UUID(created["id"])
    upload_key = batch_row(sessions, batch_id).source["key"]
    recorded: list[str] = []

    def broken_add_items(*args: Any, **kwargs: Any) -> int:
        recorded.extend(key for key in _staged_keys(tenant, batch_id, 3) if store.exists(key))
        raise RuntimeError("the database refused the inputs")

    monkeypatch.setattr(worker_ingestion, "add_items", broken_add_items)
    for attempt in range(1, INTAKE_ATTEMPTS + 1):
        expand_batch(runtime, batch_id)  # never raises: the failure is recorded
        batch = batch_row(sessions, batch_id)
        assert batch.intake_lease_expires_at is None  # the next run need not wait for a lease
        assert batch.state == ("expanding" if attempt < INTAKE_ATTEMPTS else "failed")
    assert len(recorded) == 3 * INTAKE_ATTEMPTS  # each run had staged the entries…
    assert not any(store.exists(key) for key in _staged_keys(tenant, batch_id, 3))  # …and removed them
    assert batch.error_code == "intake_exhausted" and "refused the inputs" in (batch.error_message or "")
    assert [event.type for event in batch_events(sessions, batch_id)] == ["batch.failed"]
    assert not store.exists(upload_key)


def test_a_cancelled_batch_leaves_no_staged_or_uploaded_objects(
    api: TestClient,
    tenant_key: TenantKey,
    runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
    store: ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, headers = tenant_key
    archive = zip_bytes({f"{i}.png": png(f"cancelled {uuid.uuid4()}") for i in range(4)})
    created = _create(api, headers, files={"archive": ("c.zip", io.BytesIO(archive))})
    batch_id = uuid.UUID(created["id"])
    upload_key = batch_row(sessions, batch_id).source["key"]
    monkeypatch.setattr(runtime.settings.intake, "prepare_window", 2)  # two documents, two inputs wait
    expand_batch(runtime, batch_id)
    staged = _staged_keys(tenant, batch_id, 4)
    assert all(store.exists(key) for key in staged)
    assert [item.state for item in items_of(sessions, batch_id)] == ["ingested"] * 2 + ["pending"] * 2

    response = api.delete(f"/v1/batches/{batch_id}", headers=headers)
    assert response.status_code == 202 and response.json()["state"] == "cancelled"
    assert [store.exists(key) for key in staged] == [True, True, False, False]  # documents keep theirs
    assert not store.exists(upload_key)


def test_listed_objects_with_keys_no_input_may_name_are_rejected_and_the_rest_ingested(
    api: TestClient,
    tenant_key: TenantKey,
    runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
    source_client: Minio,
    source_bucket: str,
) -> None:
    _, headers = tenant_key
    prefix = f"listed-{uuid.uuid4().hex[:6]}/"
    good = f"{prefix}a-good.png"
    hostile = f"{prefix}b-bell\x07.png"
    put_object(source_client, source_bucket, good, png(f"listed {uuid.uuid4()}"))
    put_object(source_client, source_bucket, hostile, png(f"hostile {uuid.uuid4()}"))
    created = _create(api, headers, data={"prefix": f"s3://{SOURCE}/{source_bucket}/{prefix}"})
    expand_batch(runtime, uuid.UUID(created["id"]))
    items = items_of(sessions, created["id"])
    assert [(item.name, item.state, item.error_code) for item in items] == [
        (good, "ingested", None),
        (f"{prefix}b-bell\\x07.png", "rejected", "invalid_object_key"),
    ]
    assert batch_row(sessions, created["id"]).state == "running"


def test_archive_member_names_with_control_characters_are_reported_escaped(
    api: TestClient, tenant_key: TenantKey, runtime: WorkerRuntime, sessions: sessionmaker[Session]
) -> None:
    _, headers = tenant_key
    long_name = "deep/" * 300 + "page.png"
    archive = zip_bytes({"bell\x07.png": png(f"bell {uuid.uuid4()}"), long_name: png(f"long {uuid.uuid4()}")})
    created = _create(api, headers, files={"archive": ("names.zip", io.BytesIO(archive))})
    expand_batch(runtime, uuid.UUID(created["id"]))
    items = items_of(sessions, created["id"])
    assert [(item.name, item.state) for item in items] == [
        ("bell\\x07.png", "ingested"),
        (long_name, "ingested"),
    ]
    assert len(documents_of(sessions, created["id"])) == 2


def test_the_sweeper_that_gives_intake_up_deletes_what_the_batch_left(
    api: TestClient,
    tenant_key: TenantKey,
    runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
    store: ObjectStore,
) -> None:
    _, headers = tenant_key
    archive = zip_bytes({f"{i}.png": png(f"given up {uuid.uuid4()}") for i in range(2)})
    created = _create(api, headers, files={"archive": ("g.zip", io.BytesIO(archive))})
    batch_id = uuid.UUID(created["id"])
    upload_key = batch_row(sessions, batch_id).source["key"]
    assert store.exists(upload_key)
    with sessions.begin() as session:  # three runs died holding the lease
        session.execute(
            update(Batch)
            .where(Batch.id == batch_id)
            .values(
                intake_attempts=INTAKE_ATTEMPTS, intake_lease_expires_at=func.now() - timedelta(seconds=1)
            )
        )
    run_sweep(runtime)
    batch = batch_row(sessions, batch_id)
    assert batch.state == "failed" and batch.error_code == "intake_exhausted"
    assert not store.exists(upload_key)


def test_a_batch_cancelled_while_its_archive_is_unpacked_keeps_nothing_staged(
    api: TestClient,
    tenant_key: TenantKey,
    runtime: WorkerRuntime,
    sessions: sessionmaker[Session],
    store: ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, headers = tenant_key
    archive = zip_bytes({f"{i}.png": png(f"raced {uuid.uuid4()}") for i in range(3)})
    created = _create(api, headers, files={"archive": ("r.zip", io.BytesIO(archive))})
    batch_id = uuid.UUID(created["id"])
    real_add_items = worker_ingestion.add_items
    staged_before_cancel: list[bool] = []

    def cancelled_first(session: Session, *args: Any, **kwargs: Any) -> int | None:
        staged_before_cancel.extend(store.exists(key) for key in _staged_keys(tenant, batch_id, 3))
        response = api.delete(f"/v1/batches/{batch_id}", headers=headers)  # the client cancels meanwhile
        assert response.status_code == 202
        return real_add_items(session, *args, **kwargs)

    monkeypatch.setattr(worker_ingestion, "add_items", cancelled_first)
    expand_batch(runtime, batch_id)
    assert staged_before_cancel == [True, True, True]
    assert batch_row(sessions, batch_id).state == "cancelled"
    assert items_of(sessions, batch_id) == []
    assert not any(store.exists(key) for key in _staged_keys(tenant, batch_id, 3))
