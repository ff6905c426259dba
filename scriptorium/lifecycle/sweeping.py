"""The periodic repair of what crashes and lost messages leave behind."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_, select, text, update

from scriptorium.db.models import Document, Event, Page
from scriptorium.errors import ReasonCode
from scriptorium.leases import expired, seconds_ago
from scriptorium.lifecycle.documents import fail_document, finish_document_if_done, lock_document
from scriptorium.states import DocumentState, Lane, PageState
from scriptorium.unit_of_work import UnitOfWork

SWEEPER_LOCK = 727274


@dataclass
class SweepReport:
    requeued: int = 0
    dead: int = 0
    documents_finished: list[Event] = field(default_factory=list)
    documents_failed: int = 0
    prepare_resent: int = 0


def sweep(
    uow: UnitOfWork, *, lost_after_s: int, prepare_attempts: int, lease_grace_s: int = 0
) -> SweepReport:
    """Dead-letter exhausted pages, requeue expired leases, finish documents that are due, and
    re-send ``prepare`` for documents whose message went quiet; run under :func:`try_sweeper_lock`.

    ``lease_grace_s`` lets leases run that long past their expiry before they count as lost:
    right after a database outage, live workers have had no chance to extend them yet.
    """
    session = uow.session
    report = SweepReport()
    touched: set[uuid.UUID] = set()

    exhausted = session.execute(
        update(Page)
        .where(
            Page.attempts >= Page.max_attempts,
            or_(
                Page.state == PageState.QUEUED,
                and_(Page.state == PageState.RUNNING, expired(Page.lease_expires_at, grace_s=lease_grace_s)),
            ),
        )
        .values(
            state=PageState.DEAD,
            lease_token=None,
            lease_expires_at=None,
            error_code=ReasonCode.ATTEMPTS_EXHAUSTED,
            error_message="the page was attempted the maximum number of times without finishing",
            finished_at=func.now(),
            updated_at=func.now(),
        )
        .returning(Page.document_id)
    ).all()
    report.dead = len(exhausted)
    touched.update(row.document_id for row in exhausted)

    expired_leases = session.execute(
        update(Page)
        .where(Page.state == PageState.RUNNING, expired(Page.lease_expires_at, grace_s=lease_grace_s))
        .values(
            state=PageState.QUEUED,
            lease_token=None,
            lease_expires_at=None,
            dispatched_at=None,
            updated_at=func.now(),
        )
        .returning(Page.document_id)
    ).all()
    report.requeued = len(expired_leases)

    for document_id in sorted(touched):
        document = lock_document(session, document_id)
        if document is not None:
            event = finish_document_if_done(uow, document)
            if event is not None:
                report.documents_finished.append(event)

    stale_prepare = session.execute(
        select(Document)
        .where(
            or_(
                and_(
                    Document.state == DocumentState.RECEIVED,
                    Document.duplicate_of.is_(None),  # waits for its original, see scriptorium.dedup
                    func.coalesce(Document.prepare_dispatched_at, Document.created_at)
                    < seconds_ago(lost_after_s),
                ),
                and_(
                    Document.state == DocumentState.PREPARING,
                    expired(Document.prepare_lease_expires_at, grace_s=lease_grace_s),
                ),
            )
        )
        .with_for_update(skip_locked=True)
    ).scalars()
    for document in list(stale_prepare):
        if document.prepare_attempts >= prepare_attempts:
            event = fail_document(
                uow,
                document.id,
                ReasonCode.ATTEMPTS_EXHAUSTED,
                "preparing the document failed repeatedly (worker crash or timeout)",
            )
            if event is not None:
                report.documents_failed += 1
                report.documents_finished.append(event)
            continue
        document.prepare_dispatched_at = func.now()
        uow.outbox.prepare(document.id, document.request_id, Lane(document.priority))
        report.prepare_resent += 1
    return report


def try_sweeper_lock(uow: UnitOfWork) -> bool:
    """Transaction-scoped advisory lock so only one sweeper repairs at a time."""
    locked = uow.session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SWEEPER_LOCK})
    return bool(locked.scalar_one())
