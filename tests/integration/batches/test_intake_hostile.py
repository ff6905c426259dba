"""Intake that must lose nothing and leave nothing stuck: hostile manifest lines and keys, archives
at the entry limit, runs that fail, and what cancelled or failed batches leave in storage."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from minio import Minio
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Tenant
from tests.integration.batches.conftest import SOURCE, batch_row, items_of, png, put_object
from worker.ingestion import expand_batch
from worker.runtime import WorkerRuntime

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
