"""Batch intake against real Postgres, Redis and S3: a named source bucket, settings that use it,
a worker runtime to run intake in-process, and helpers that finish documents the product's way."""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from minio import Minio
from PIL import Image, ImageDraw
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from scriptorium.db.models import Batch, BatchItem, Document, Event, Page, Tenant
from scriptorium.lifecycle.claims import claim_page
from scriptorium.lifecycle.documents import lock_document
from scriptorium.lifecycle.recording import record_page_outcome
from scriptorium.settings import IntakeSettings, Settings, SourceSettings
from scriptorium.states import DocumentState, PageState
from tests.support import builders
from tests.support.services import S3Server
from tests.support.units import unit_of_work
from worker.runtime import WorkerRuntime

SOURCE = "archive"
MISSING_BUCKET = "source-never-created"  # the source serves it, the server has no such bucket


def source_env(s3: S3Server, buckets: list[str]) -> dict[str, str]:
    """The named source as the variables the fleet's processes read. It shares the endpoint of
    internal storage, so it must list its buckets (the fleet refuses to start otherwise)."""
    return {
        "SCRIPTORIUM_SOURCES__ARCHIVE__ENDPOINT": s3.endpoint,
        "SCRIPTORIUM_SOURCES__ARCHIVE__ACCESS_KEY": s3.access_key,
        "SCRIPTORIUM_SOURCES__ARCHIVE__SECRET_KEY": s3.secret_key,
        "SCRIPTORIUM_SOURCES__ARCHIVE__BUCKETS": json.dumps(buckets),
    }


@pytest.fixture(scope="session")
def source_client(s3_server: S3Server) -> Minio:
    return Minio(
        s3_server.endpoint, access_key=s3_server.access_key, secret_key=s3_server.secret_key, secure=False
    )


@pytest.fixture(scope="session")
def source_bucket(source_client: Minio) -> str:
    bucket = f"source-{uuid.uuid4().hex[:10]}"
    source_client.make_bucket(bucket)
    return bucket


@pytest.fixture(scope="session")
def intake_settings(settings: Settings, s3_server: S3Server, source_bucket: str) -> Settings:
    values = settings.model_dump()
    values["sources"] = {
        SOURCE: SourceSettings(
            endpoint=s3_server.endpoint,
            access_key=s3_server.access_key,
            secret_key=SecretStr(s3_server.secret_key),
            buckets=[source_bucket, MISSING_BUCKET],
        )
    }
    values["intake"] = IntakeSettings(run_budget_s=60, watch_poll_interval_s=1, copy_concurrency=4)
    return Settings(_env_file=None, **values)  # validated like a process's settings


@pytest.fixture(scope="session")
def runtime(intake_settings: Settings) -> Iterator[WorkerRuntime]:
    built = WorkerRuntime.build(intake_settings)
    yield built
    built.close()


@pytest.fixture(scope="module")
def api(intake_settings: Settings, store: Any) -> Iterator[TestClient]:
    with TestClient(create_app(intake_settings)) as client:
        yield client


@pytest.fixture
def tenant_key(sessions: sessionmaker[Session]) -> tuple[Tenant, dict[str, str]]:
    with sessions.begin() as session:
        issued = builders.tenant(session)
    return issued.tenant, {"Authorization": f"Bearer {issued.key}"}


def png(label: str, size: tuple[int, int] = (96, 64)) -> bytes:
    """A tiny page with its label drawn on it and a random strip, so no two are the same bytes
    (identical ones would be served by dedup instead of being read)."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((4, 4), label, fill="black")
    for x, value in enumerate(os.urandom(16)):
        draw.point((x, size[1] - 1), fill=(value, value, value))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def put_object(client: Minio, bucket: str, key: str, data: bytes) -> str:
    """Store an object in the source bucket; returns its ETag."""
    return str(client.put_object(bucket, key, io.BytesIO(data), len(data)).etag).strip('"')


def batch_row(sessions: sessionmaker[Session], batch_id: uuid.UUID | str) -> Batch:
    with sessions() as session:
        batch = session.get(Batch, uuid.UUID(str(batch_id)))
        assert batch is not None
        return batch


def items_of(sessions: sessionmaker[Session], batch_id: uuid.UUID | str) -> list[BatchItem]:
    with sessions() as session:
        return list(
            session.execute(
                select(BatchItem)
                .where(BatchItem.batch_id == uuid.UUID(str(batch_id)))
                .order_by(BatchItem.seq)
            ).scalars()
        )


def documents_of(sessions: sessionmaker[Session], batch_id: uuid.UUID | str) -> list[Document]:
    with sessions() as session:
        return list(
            session.execute(
                select(Document)
                .where(Document.batch_id == uuid.UUID(str(batch_id)))
                .order_by(Document.created_at)
            ).scalars()
        )


def batch_events(sessions: sessionmaker[Session], batch_id: uuid.UUID | str) -> list[Event]:
    with sessions() as session:
        return list(
            session.execute(
                select(Event).where(Event.batch_id == uuid.UUID(str(batch_id))).order_by(Event.created_at)
            ).scalars()
        )


def start_processing(sessions: sessionmaker[Session], document_id: uuid.UUID) -> None:
    """What preparation leaves behind: one queued page, the document processing."""
    with sessions.begin() as session:
        document = lock_document(session, document_id)
        assert document is not None and document.state == DocumentState.RECEIVED
        session.add(
            Page(
                document_id=document_id,
                page_no=1,
                state=PageState.QUEUED,
                max_attempts=3,
                image_key="unused",
                width=96,
                height=64,
                routing={"mode": "tiny"},
                planned_mode="tiny",
                ocr_attempts=[],
                dispatched_at=func.now(),
            )
        )
        document.state = DocumentState.PROCESSING
        document.pages_total = 1
        document.started_at = func.now()


def read_page(sessions: sessionmaker[Session], document_id: uuid.UUID, *, fail: bool = False) -> Event | None:
    """Claim and record the document's page through the product's guarded transitions, as a
    worker of the document's model family would."""
    with sessions.begin() as session:
        model = session.execute(select(Document.model).where(Document.id == document_id)).scalar_one()
        claim = claim_page(session, document_id, 1, owner="test", lease_s=60, model=model)
        assert claim is not None
    outcome = builders.page_outcome(fail=fail, mode="tiny")
    with unit_of_work(sessions) as uow:
        return record_page_outcome(uow, claim, outcome).event


def finish_document(sessions: sessionmaker[Session], document_id: uuid.UUID, *, fail: bool = False) -> None:
    start_processing(sessions, document_id)
    read_page(sessions, document_id, fail=fail)
