"""Outside compose nothing but ``scriptorium migrate`` prepares storage: it creates the bucket when
it is missing (and leaves an existing one alone), after which the API is ready."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from minio import Minio

from api.app import create_app
from scriptorium.settings import Settings
from tests.support.services import S3Server

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _migrate(env: dict[str, str], bucket: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scriptorium.cli", "migrate"],
        cwd=ROOT,
        env={**env, "SCRIPTORIUM_STORAGE__BUCKET": bucket},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_creates_the_missing_bucket_once_and_the_api_turns_ready(
    env: dict[str, str], settings: Settings, s3_server: S3Server
) -> None:
    bucket = f"fresh-{uuid.uuid4().hex[:12]}"
    client = Minio(
        s3_server.endpoint, access_key=s3_server.access_key, secret_key=s3_server.secret_key, secure=False
    )
    fresh = settings.model_copy(update={"storage": settings.storage.model_copy(update={"bucket": bucket})})
    with TestClient(create_app(fresh)) as api:
        before = api.get("/readyz")
        assert before.status_code == 503 and before.json()["checks"]["storage"].startswith("error")

        first = _migrate(env, bucket)
        assert first.returncode == 0, first.stderr[-3000:]
        assert client.bucket_exists(bucket)
        assert f"created bucket {bucket!r}" in first.stdout
        client.put_object(bucket, "kept", io.BytesIO(b"1"), 1)

        again = _migrate(env, bucket)  # idempotent: the bucket and what it holds stay
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"bucket {bucket!r} exists" in again.stdout
        assert client.stat_object(bucket, "kept").size == 1

        after = api.get("/readyz")
        assert after.status_code == 200, after.text


def test_migrate_fails_clearly_when_storage_is_unreachable(env: dict[str, str]) -> None:
    broken = {**env, "SCRIPTORIUM_STORAGE__ENDPOINT": "127.0.0.1:1"}
    completed = _migrate(broken, f"never-{uuid.uuid4().hex[:8]}")
    assert completed.returncode != 0
    assert "storage" in completed.stderr and "127.0.0.1:1" in completed.stderr
