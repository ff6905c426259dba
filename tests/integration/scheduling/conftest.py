"""Scheduling, quota and dedup tests on real Postgres: documents built in rows, pages read as workers do."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, Page, Tenant, TenantUsage, UsageEntry
from scriptorium.dispatch import admit_and_dispatch
from scriptorium.lifecycle.claims import claim_page
from scriptorium.lifecycle.recording import AttemptRecord, record_page_outcome
from scriptorium.model_families import DEFAULT_MODEL_FAMILY
from scriptorium.states import DocumentState, PageState
from tests.support import builders
from tests.support.units import RecordingSink, unit_of_work

LOST_AFTER_S = 300


@pytest.fixture
def quiet_queue(request: pytest.FixtureRequest) -> None:
    """Dispatch is global: work that committing tests left behind must not take this test's slots.

    A test in a rolled-back transaction (``db_sessions``) sets that work aside inside it, so nothing
    is touched for good. Tests about the order of creation times commit (``sessions``): inside one
    transaction ``now()`` is its start, so every row would get the same time.
    """
    uses = "db_sessions" if "db_sessions" in request.fixturenames else "sessions"
    factory: sessionmaker[Session] = request.getfixturevalue(uses)
    with factory.begin() as session:
        session.execute(update(Page).where(Page.state == PageState.QUEUED).values(state=PageState.CANCELLED))
        session.execute(
            update(Document)
            .where(Document.state == DocumentState.PAUSED)
            .values(state=DocumentState.CANCELLED)
        )


def new_tenant(sessions: sessionmaker[Session], **limits: Any) -> Tenant:
    with sessions.begin() as session:
        tenant = builders.tenant(session).tenant
        for name, value in limits.items():
            setattr(tenant, name, value)
        session.flush()
        session.expunge(tenant)
        return tenant


def backlog(
    sessions: sessionmaker[Session],
    tenant: Tenant,
    *,
    pages: int,
    priority: str = "interactive",
    mode: str = "base",
    model: str = DEFAULT_MODEL_FAMILY,
) -> uuid.UUID:
    """A processing document (read by ``model``) whose pages are queued and not yet dispatched."""
    with sessions.begin() as session:
        return builders.document_with_pages(
            session, tenant, pages=pages, mode=mode, dispatched=False, priority=priority, model=model
        ).id


def dispatch(sessions: sessionmaker[Session], *, depth: int) -> RecordingSink:
    """One admission and dispatch pass; the sink holds the messages it sent."""
    sink = RecordingSink()
    with unit_of_work(sessions, sink) as uow:
        admit_and_dispatch(uow, depth=depth, lost_after_s=LOST_AFTER_S)
    return sink


def read_page(
    sessions: sessionmaker[Session],
    document_id: uuid.UUID,
    page_no: int,
    *attempts: AttemptRecord,
    revision: str = "rev-1",
    model: str = DEFAULT_MODEL_FAMILY,
) -> bool:
    """Claim a page and record a result the way a GPU worker of ``model`` does; False when it could
    not be claimed."""
    with unit_of_work(sessions) as uow:
        claim = claim_page(uow.session, document_id, page_no, owner="test", lease_s=60, model=model)
        if claim is None:
            return False
        outcome = builders.page_outcome(
            *attempts, markdown=f"page {page_no} of {document_id}", revision=revision, model=model
        )
        record_page_outcome(uow, claim, outcome)
    return True


def document(sessions: sessionmaker[Session], document_id: uuid.UUID) -> Document:
    with sessions() as session:
        found = session.get(Document, document_id)
        assert found is not None
        return found


def page_states(sessions: sessionmaker[Session], document_id: uuid.UUID) -> dict[int, str]:
    with sessions() as session:
        rows = session.execute(select(Page.page_no, Page.state).where(Page.document_id == document_id)).all()
        return {page_no: state for page_no, state in rows}


def assert_usage_matches_ledger(sessions: sessionmaker[Session], tenant_id: uuid.UUID) -> None:
    with sessions() as session:
        usage = session.get(TenantUsage, tenant_id)
        pages, tokens = session.execute(
            select(
                func.count(func.distinct(func.row(UsageEntry.document_id, UsageEntry.page_no))),
                func.coalesce(func.sum(UsageEntry.vision_tokens + UsageEntry.output_tokens), 0),
            ).where(UsageEntry.tenant_id == tenant_id)
        ).one()
    assert (usage.pages if usage else 0, usage.tokens if usage else 0) == (pages, tokens)
