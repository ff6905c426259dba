"""A lease kept alive while long work runs: preparation of a big document keeps its claim."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document
from scriptorium.lifecycle.claims import extend_prepare_lease
from scriptorium.states import DocumentState
from tests.support import builders
from worker.lease_keeper import keeping_lease
from worker.runtime import WorkerRuntime

pytestmark = pytest.mark.integration


def _preparing(sessions: sessionmaker[Session], *, lease_s: float) -> Document:
    with sessions.begin() as session:
        owner = builders.tenant(session).tenant
        document = builders.document_with_pages(session, owner, pages=0, state=DocumentState.PREPARING)
        session.execute(
            update(Document)
            .where(Document.id == document.id)
            .values(prepare_lease_expires_at=func.now() + timedelta(seconds=lease_s))
        )
        return document


def _expiry(sessions: sessionmaker[Session], document: Document) -> tuple[datetime, datetime]:
    with sessions() as session:
        row = session.execute(
            select(Document.prepare_lease_expires_at, func.now()).where(Document.id == document.id)
        ).one()
    return row[0], row[1]


def test_a_preparation_outliving_its_lease_keeps_its_claim(
    runtime: WorkerRuntime, sessions: sessionmaker[Session]
) -> None:
    document = _preparing(sessions, lease_s=1)
    lease_s = runtime.settings.limits.lease_s  # 4 s in tests: the keeper beats every 1.3 s
    with keeping_lease(
        runtime, lambda session: extend_prepare_lease(session, document.id, lease_s=lease_s), name="prepare"
    ):
        time.sleep(3)
        expires, now = _expiry(sessions, document)
        assert expires > now, "the lease ran out while the work went on"
    time.sleep(lease_s + 1)
    expires, now = _expiry(sessions, document)
    assert expires < now, "the keeper went on after the work ended"


def test_a_document_no_longer_preparing_is_not_extended(
    runtime: WorkerRuntime, sessions: sessionmaker[Session]
) -> None:
    document = _preparing(sessions, lease_s=60)
    with sessions.begin() as session:
        session.execute(
            update(Document).where(Document.id == document.id).values(state=DocumentState.CANCELLED)
        )
        assert not extend_prepare_lease(session, document.id, lease_s=600)
