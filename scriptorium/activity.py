"""What a tenant has in flight right now: documents and pages by state, throughput, queue age."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scriptorium.db.models import Document, Page
from scriptorium.states import TERMINAL_DOCUMENT_STATES, TERMINAL_PAGE_STATES, PageState

THROUGHPUT_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Activity:
    documents_in_flight: dict[str, int] = field(default_factory=dict)  # non-terminal documents by state
    pages_in_flight: dict[str, int] = field(default_factory=dict)  # queued and running pages
    pages_finished_last_hour: int = 0
    oldest_queued_at: datetime | None = None
    measured_at: datetime | None = None

    @property
    def pages_per_s(self) -> float:
        return self.pages_finished_last_hour / THROUGHPUT_WINDOW.total_seconds()

    @property
    def oldest_queued_age_s(self) -> float | None:
        if self.oldest_queued_at is None or self.measured_at is None:
            return None
        return max(0.0, (self.measured_at - self.oldest_queued_at).total_seconds())


def tenant_activity(session: Session, tenant_id: uuid.UUID) -> Activity:
    now: datetime = session.execute(select(func.now())).scalar_one()
    terminal_documents = [state.value for state in TERMINAL_DOCUMENT_STATES]
    documents = dict(
        session.execute(
            select(Document.state, func.count())
            .where(Document.tenant_id == tenant_id, Document.state.not_in(terminal_documents))
            .group_by(Document.state)
        ).all()
    )
    tenant_pages = (
        select(Page).join(Document, Document.id == Page.document_id).where(Document.tenant_id == tenant_id)
    )
    open_pages = tenant_pages.where(
        Page.state.in_((PageState.QUEUED.value, PageState.RUNNING.value))
    ).subquery()
    pages = {
        str(state): int(count)
        for state, count in session.execute(
            select(open_pages.c.state, func.count()).group_by(open_pages.c.state)
        ).all()
    }
    oldest = session.execute(
        select(func.min(open_pages.c.created_at)).where(open_pages.c.state == PageState.QUEUED.value)
    ).scalar_one()
    finished = tenant_pages.where(
        Page.state.in_([state.value for state in TERMINAL_PAGE_STATES if state is not PageState.CANCELLED]),
        Page.finished_at >= now - THROUGHPUT_WINDOW,
    ).subquery()
    finished_count = session.execute(select(func.count()).select_from(finished)).scalar_one()
    return Activity(
        documents_in_flight={str(state): int(count) for state, count in documents.items()},
        pages_in_flight=pages,
        pages_finished_last_hour=int(finished_count),
        oldest_queued_at=oldest,
        measured_at=now,
    )
