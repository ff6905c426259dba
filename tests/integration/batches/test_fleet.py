"""Batches through the real fleet: API, CPU workers (intake, preparation, webhooks), a GPU worker
with the deterministic engine, and beat (sweeper, watch polling), all as separate processes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from minio import Minio
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, WatchObject
from scriptorium.storage import ObjectStore
from tests.integration.batches.conftest import SOURCE, batch_events, png, put_object, source_env
from tests.integration.batches.test_watches import minio_notification
from tests.integration.webhooks.conftest import webhook_env_vars
from tests.integration.webhooks.receiver import running_receiver
from tests.support.client import ApiClient
from tests.support.fleet import ROOT, SCRIPTORIUM, Fleet, ManagedProcess, running_fleet, wait_until
from tests.support.invariants import assert_invariants
from tests.support.services import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLEET_ENV = {
    **webhook_env_vars(poll_interval_s=2.0),  # the sender's polls cost CPU the batch needs
    "SCRIPTORIUM_LIMITS__SWEEP_INTERVAL_S": "2",
    "SCRIPTORIUM_LIMITS__DISPATCH_DEPTH": "128",
    "SCRIPTORIUM_LIMITS__LOST_MESSAGE_AFTER_S": "30",  # a 2-core machine is busy; no early re-sends
    "SCRIPTORIUM_LIMITS__MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
    "SCRIPTORIUM_ENGINE__MAX_BATCH_PAGES": "16",
    "SCRIPTORIUM_INTAKE__PREPARE_WINDOW": "24",
    "SCRIPTORIUM_INTAKE__WINDOW_POLL_S": "0.5",
    "SCRIPTORIUM_INTAKE__WATCH_POLL_INTERVAL_S": "1",
}
TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture(scope="module")
def fleet(
    env: dict[str, str],
    store: ObjectStore,
    s3_server: S3Server,
    source_bucket: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    with running_fleet(
        {**env, **FLEET_ENV, **source_env(s3_server, [source_bucket])}, tmp_path_factory.mktemp("batch-fleet")
    ) as fleet:
        fleet.start_api()
        fleet.spawn(
            "worker-cpu",
            [
                *SCRIPTORIUM,
                "worker",
                "--queues",
                "cpu",
                "--concurrency",
                "2",
                "--hostname",
                "worker-cpu@test",
            ],
        )
        fleet.start_gpu_worker()
        fleet.start_beat()
        yield fleet


@pytest.fixture
def client(fleet: Fleet, sessions: sessionmaker[Session]) -> ApiClient:
    return ApiClient.for_new_tenant(fleet, sessions)


def _archive(count: int, label: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for index in range(count):
            archive.writestr(
                f"box-{index // 100:02d}/{index:04d}.png", png(f"{label} {index}", size=(64, 40))
            )
    return buffer.getvalue()


def _create_archive_batch(client: ApiClient, data: bytes, **form: str) -> dict[str, Any]:
    response = client.http.post("/v1/batches", files={"archive": ("scans.zip", io.BytesIO(data))}, data=form)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def _wait_batch(
    client: ApiClient, batch_id: str, *, timeout: float, state: str = "completed"
) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        batch: dict[str, Any] = client.http.get(f"/v1/batches/{batch_id}").json()
        return batch if batch["state"] in TERMINAL else None

    batch: dict[str, Any] = wait_until(
        final, timeout=timeout, what=f"batch {batch_id} to finish", fleet=client.fleet
    )
    assert batch["state"] == state, batch
    return batch


def _batch_documents(sessions: sessionmaker[Session], batch_id: str) -> list[uuid.UUID]:
    with sessions() as session:
        return list(
            session.execute(select(Document.id).where(Document.batch_id == uuid.UUID(batch_id))).scalars()
        )


@pytest.mark.timeout(900)  # about 0.6 s of CPU per document (sandboxed rendering, engine, writes) on 2 cores
def test_a_thousand_document_archive_completes_with_every_invariant_and_one_webhook(
    client: ApiClient, sessions: sessionmaker[Session]
) -> None:
    with running_receiver() as receiver:
        endpoint = client.http.post(
            "/v1/webhooks/endpoints", json={"url": receiver.url(), "event_types": ["batch.completed"]}
        )
        assert endpoint.status_code == 201, endpoint.text
        started = time.monotonic()
        created = _create_archive_batch(client, _archive(1000, f"thousand {uuid.uuid4()}"))
        batch = _wait_batch(client, created["id"], timeout=840)
        elapsed = time.monotonic() - started
        wait_until(receiver.requests, timeout=30, what="the batch.completed webhook", fleet=client.fleet)
        time.sleep(2)  # several sender polls later, still one
        [request] = receiver.requests()
    print(f"1000 documents: batch completed in {elapsed:.1f} s")
    assert request.signed_by(endpoint.json()["secret"])
    body = request.json
    assert body["type"] == "batch.completed" and body["data"]["batch_id"] == created["id"]
    assert body["data"]["outcomes"]["done"] == 1000 and body["data"]["round"] == 1
    assert body["data"]["links"]["report_csv"].endswith(f"/v1/batches/{created['id']}/report?format=csv")
    assert batch["outcomes"]["done"] == 1000 and batch["progress"]["fraction"] == 1.0
    assert batch["documents"] == {"completed": 1000} and batch["tokens"]["vision"] >= 1000 * 64
    documents = _batch_documents(sessions, created["id"])
    assert len(documents) == 1000
    assert_invariants(sessions, documents)
    assert [e.type for e in batch_events(sessions, created["id"])] == ["batch.completed"]
    report = client.http.get(f"/v1/batches/{created['id']}/report", params={"format": "csv"})
    rows = report.text.strip().splitlines()
    assert len(rows) == 1001 and all(",done," in row for row in rows[1:])


def test_retry_failed_after_a_bad_gpu_node_completes_the_next_round(
    fleet: Fleet, client: ApiClient, sessions: sessionmaker[Session]
) -> None:
    [good] = [p for p in fleet.processes if p.name == "worker-gpu"]
    _replace(fleet, good)
    bad = fleet.start_gpu_worker("worker-gpu-bad", engine_env={"FAKE_ENGINE_FAIL_PAGES": "1"})
    try:
        created = _create_archive_batch(client, _archive(4, f"retry {uuid.uuid4()}"))
        first = _wait_batch(client, created["id"], timeout=120)
        assert first["outcomes"]["failed"] == 4
        failed = client.http.get(f"/v1/batches/{created['id']}/documents", params={"state": "failed"}).json()
        assert len(failed["items"]) == 4 and failed["items"][0]["error"]["code"] == "engine_error"
    finally:
        _replace(fleet, bad)
        fleet.start_gpu_worker()
    retried = client.http.post(f"/v1/batches/{created['id']}/retry-failed")
    assert retried.status_code == 202 and retried.json()["retried_documents"] == 4
    second = _wait_batch(client, created["id"], timeout=120)
    assert second["outcomes"]["done"] == 4 and second["round"] == 2
    events = batch_events(sessions, created["id"])
    assert [(e.type, e.batch_round) for e in events] == [("batch.completed", 1), ("batch.completed", 2)]
    report = client.http.get(f"/v1/batches/{created['id']}/report").json()
    assert all(row["attempts"] == 2 and len(row["previous_documents"]) == 1 for row in report["items"])
    assert_invariants(sessions, _batch_documents(sessions, created["id"]))


def _replace(fleet: Fleet, process: ManagedProcess) -> None:
    process.stop()
    fleet.processes.remove(process)


def _cli(fleet: Fleet, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "scriptorium.cli",
            *args,
            "--url",
            fleet.api_url,
            "--api-key",
            key,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=fleet.env,
        check=False,
    )


def test_the_cli_ingests_a_directory_resumably_and_watches_the_batch(
    fleet: Fleet, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    from tests.support import builders

    with sessions.begin() as session:
        key = builders.tenant(session).key
    folder = tmp_path / "archive"
    (folder / "sub").mkdir(parents=True)
    for index in range(5):
        (folder / "sub" / f"{index}.png").write_bytes(png(f"cli {uuid.uuid4()} {index}"))
    too_big = folder / "late.png"
    too_big.write_bytes(b"\x89PNG" + bytes(3 * 1024 * 1024))  # over this fleet's upload limit
    name = f"cli-{uuid.uuid4().hex[:8]}"

    first = _cli(fleet, key, "ingest", str(folder), "--batch", name, "--concurrency", "3")
    assert first.returncode == 1, first.stderr
    assert len(first.stdout.strip().splitlines()) == 5 and "too_large" in first.stderr
    assert "5 uploaded, 0 already in, 1 failed" in first.stderr

    too_big.write_bytes(png(f"cli late {uuid.uuid4()}"))
    second = _cli(fleet, key, "ingest", str(folder), "--batch", name)
    assert second.returncode == 0, second.stderr
    assert "1 uploaded, 5 already in, 0 failed" in second.stderr
    [line] = second.stdout.strip().splitlines()
    assert line.endswith("late.png")
    batch_id = second.stderr.split("batch ", 1)[1].split(" ", 1)[0]

    status = _cli(fleet, key, "batch", "status", batch_id, "--watch")
    assert status.returncode == 0, status.stderr
    assert "completed" in status.stdout and "done 6" in status.stdout
    third = _cli(fleet, key, "ingest", str(folder), "--batch", name)
    assert third.returncode == 0 and "0 uploaded, 6 already in, 0 failed" in third.stderr


def test_a_watched_prefix_ingests_each_object_once_by_notification_and_polling(
    fleet: Fleet,
    client: ApiClient,
    sessions: sessionmaker[Session],
    source_client: Minio,
    source_bucket: str,
) -> None:
    prefix = f"inbox-{uuid.uuid4().hex[:6]}/"
    created = client.http.post(
        "/v1/watches", json={"source": SOURCE, "bucket": source_bucket, "prefix": prefix}
    )
    assert created.status_code == 201, created.text
    watch = created.json()
    notified_key = f"{prefix}notified.png"
    etag = put_object(source_client, source_bucket, notified_key, png(f"notified {uuid.uuid4()}"))
    response = client.http.post(
        watch["notification_url"].removeprefix(fleet.api_url),
        content=json.dumps(minio_notification(source_bucket, notified_key, etag)),
        headers={"Authorization": f"Bearer {watch['token']}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200 and response.json()["new"] == 1
    polled_key = f"{prefix}polled.png"
    put_object(source_client, source_bucket, polled_key, png(f"polled {uuid.uuid4()}"))

    def objects() -> list[WatchObject]:
        with sessions() as session:
            return list(
                session.execute(
                    select(WatchObject)
                    .where(WatchObject.watch_id == uuid.UUID(watch["id"]))
                    .order_by(WatchObject.key)
                ).scalars()
            )

    wait_until(
        lambda: (
            [(o.key, o.state) for o in objects()] == [(notified_key, "ingested"), (polled_key, "ingested")]
            and all(o.listed_at is not None for o in objects())
        ),
        timeout=60,
        what="both objects ingested and listed by the poller",
        fleet=fleet,
    )
    notified, polled = objects()
    assert notified.notified_at is not None and polled.notified_at is None
    for obj in (notified, polled):
        document = client.wait_terminal(str(obj.document_id))
        assert document["state"] == "completed"
    with sessions() as session:
        documents = list(
            session.execute(
                select(Document.id).where(Document.id.in_([notified.document_id, polled.document_id]))
            ).scalars()
        )
    assert len(documents) == 2
    assert_invariants(sessions, documents)
