"""GPU worker heartbeats and the families that wait for a worker, on real Postgres."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, update
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import GpuWorker, Page
from scriptorium.gpu_workers import (
    Waiting,
    live_models,
    models_without_worker,
    pages_waiting_for_model,
    record_heartbeat,
    retire,
    waiting_documents,
)
from scriptorium.states import DocumentState, PageState
from tests.support import builders

pytestmark = pytest.mark.integration

GONE_AFTER_S = 15


def _silence(session: Session, identity: str, seconds: float) -> None:
    session.execute(
        update(GpuWorker)
        .where(GpuWorker.identity == identity)
        .values(last_seen_at=func.now() - timedelta(seconds=seconds))
    )


def test_a_heartbeat_announces_the_worker_once_and_then_keeps_it_alive(
    db_sessions: sessionmaker[Session],
) -> None:
    with db_sessions.begin() as session:
        session.execute(update(GpuWorker).values(last_seen_at=func.now() - timedelta(days=1)))
        record_heartbeat(session, identity="gpu-1:10", model="unlimited-ocr", model_revision="r1")
        _silence(session, "gpu-1:10", 60)
        assert live_models(session, gone_after_s=GONE_AFTER_S) == set()  # silent too long: gone
        started = session.get(GpuWorker, "gpu-1:10", populate_existing=True).started_at  # type: ignore[union-attr]
        record_heartbeat(session, identity="gpu-1:10", model="unlimited-ocr", model_revision="r2")
        row = session.get(GpuWorker, "gpu-1:10", populate_existing=True)
        assert row is not None and (row.started_at, row.model_revision) == (started, "r2")
        assert live_models(session, gone_after_s=GONE_AFTER_S) == {"unlimited-ocr"}
        retire(session, "gpu-1:10")
        assert session.get(GpuWorker, "gpu-1:10", populate_existing=True) is None
        assert live_models(session, gone_after_s=GONE_AFTER_S) == set()


def test_families_with_queued_pages_or_served_and_no_live_worker_wait(
    db_sessions: sessionmaker[Session],
) -> None:
    with db_sessions.begin() as session:
        session.execute(update(GpuWorker).values(last_seen_at=func.now() - timedelta(days=1)))
        session.execute(update(Page).where(Page.state == PageState.QUEUED).values(state=PageState.CANCELLED))
        owner = builders.tenant(session).tenant
        deepseek = builders.document_with_pages(session, owner, pages=2, model="deepseek-ocr")
        unlimited = builders.document_with_pages(session, owner, pages=3, model="unlimited-ocr")
        prepared_later = builders.document_with_pages(
            session, owner, pages=0, model="unlimited-ocr", state=DocumentState.RECEIVED
        )
        record_heartbeat(session, identity="gpu-1:10", model="deepseek-ocr", model_revision="r1")

        assert models_without_worker(session, gone_after_s=GONE_AFTER_S) == ["unlimited-ocr"]
        assert pages_waiting_for_model(session, gone_after_s=GONE_AFTER_S) == {
            "deepseek-ocr": 0,
            "unlimited-ocr": 3,
        }
        ids = [deepseek.id, unlimited.id, prepared_later.id]
        assert waiting_documents(session, ids, gone_after_s=GONE_AFTER_S) == {
            unlimited.id: Waiting(model="unlimited-ocr")
        }

        _silence(session, "gpu-1:10", 60)  # the deepseek-ocr worker died without a word
        assert models_without_worker(session, gone_after_s=GONE_AFTER_S) == ["deepseek-ocr", "unlimited-ocr"]
        record_heartbeat(session, identity="gpu-2:20", model="unlimited-ocr", model_revision="r2")
        for page in unlimited.pages:
            page.state = PageState.DONE
        session.flush()
        assert models_without_worker(session, gone_after_s=GONE_AFTER_S) == ["deepseek-ocr"]
        assert models_without_worker(session, gone_after_s=GONE_AFTER_S, served=["unlimited-ocr"]) == [
            "deepseek-ocr"
        ]
        retire(session, "gpu-2:20")
        assert models_without_worker(session, gone_after_s=GONE_AFTER_S, served=["unlimited-ocr"]) == [
            "deepseek-ocr",
            "unlimited-ocr",  # served, nothing queued, and no worker: the fleet still lacks it
        ]
