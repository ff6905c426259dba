"""Document transitions: terminal exactly once, with its event, webhook deliveries and batch check."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from scriptorium.batches.completion import finish_batch_if_done
from scriptorium.db.models import Document, Event, Page
from scriptorium.errors import ReasonCode
from scriptorium.states import (
    ACTIVE_PAGE_STATES,
    TERMINAL_DOCUMENT_STATES,
    DocumentState,
    EventType,
    PageState,
    document_outcome,
)
from scriptorium.unit_of_work import UnitOfWork
from scriptorium.webhooks.fanout import create_deliveries

_RESULT_STATES = (DocumentState.COMPLETED, DocumentState.PARTIAL)


def page_state_counts(session: Session, document_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(
        select(Page.state, func.count()).where(Page.document_id == document_id).group_by(Page.state)
    ).all()
    return {str(state): count for state, count in rows}


def event_payload(document: Document, counts: dict[str, int]) -> dict[str, Any]:
    """The thin payload clients receive: ids, state, counts and token totals, never text."""
    return {
        "document_id": str(document.id),
        "tenant_id": str(document.tenant_id),
        "state": str(document.state),
        "model": document.model,
        "pages_total": document.pages_total,
        "pages": counts,
        "tokens": {
            "vision": document.vision_tokens,
            "valid": document.valid_tokens,
            "prompt": document.prompt_tokens,
            "output": document.output_tokens,
        },
        "error_code": document.error_code,
        "metadata": document.client_metadata,
    }


def lock_document(session: Session, document_id: uuid.UUID) -> Document | None:
    return session.execute(
        select(Document).where(Document.id == document_id).with_for_update()
    ).scalar_one_or_none()


def _enter_terminal(uow: UnitOfWork, document: Document, state: DocumentState) -> Event:
    session = uow.session
    document.state = state
    document.finished_at = func.now()
    document.updated_at = func.now()
    session.flush()
    session.refresh(document)
    event = Event(
        tenant_id=document.tenant_id,
        document_id=document.id,
        type=EventType.for_document(state),
        payload=event_payload(document, page_state_counts(session, document.id)),
    )
    session.add(event)
    session.flush()
    create_deliveries(session, event, document)  # webhooks: same transaction, so no event is lost
    if document.batch_id is not None:
        finish_batch_if_done(session, document.batch_id)  # lock order: pages, document, then batch
    if state in _RESULT_STATES and document.duplicate_of is None:
        uow.outbox.assemble(document.id)
    return event


def finish_document_if_done(uow: UnitOfWork, document: Document) -> Event | None:
    """Flip a processing document to its outcome when no page is left; caller holds its row lock.

    A document paused by a budget while its last queued page was being claimed ends here too.
    """
    paused_with_pages = document.state == DocumentState.PAUSED and document.pages_total > 0
    if document.state != DocumentState.PROCESSING and not paused_with_pages:
        return None
    counts = page_state_counts(uow.session, document.id)
    if any(counts.get(state, 0) for state in ACTIVE_PAGE_STATES):
        return None
    if paused_with_pages:
        document.error_code = document.error_message = None
    states = [PageState(state) for state, count in counts.items() for _ in range(count)]
    outcome = document_outcome(states)
    if outcome is DocumentState.FAILED and not document.error_code:
        document.error_code = ReasonCode.ENGINE_ERROR
        document.error_message = "no page of the document could be read"
    return _enter_terminal(uow, document, outcome)


def fail_document(uow: UnitOfWork, document_id: uuid.UUID, reason: ReasonCode, message: str) -> Event | None:
    """Fail a document that has not started OCR (bad input, exhausted preparation)."""
    document = lock_document(uow.session, document_id)
    if document is None or document.state not in (DocumentState.RECEIVED, DocumentState.PREPARING):
        return None
    document.error_code = reason
    document.error_message = message
    document.pdf_password = None
    return _enter_terminal(uow, document, DocumentState.FAILED)


def cancel_document(uow: UnitOfWork, document: Document) -> Event | None:
    """Cancel a document (row already locked): unfinished pages never reach an engine."""
    if document.state in TERMINAL_DOCUMENT_STATES:
        return None
    uow.session.execute(
        update(Page)
        .where(Page.document_id == document.id, Page.state.in_(ACTIVE_PAGE_STATES))
        .values(
            state=PageState.CANCELLED,
            lease_token=None,
            lease_expires_at=None,
            error_code=ReasonCode.CANCELLED,
            error_message="the document was cancelled",
            finished_at=func.now(),
            updated_at=func.now(),
        )
    )
    document.error_code = ReasonCode.CANCELLED
    document.error_message = "cancelled by the client"
    document.pdf_password = None
    return _enter_terminal(uow, document, DocumentState.CANCELLED)


def admit_duplicate(uow: UnitOfWork, document: Document, original: Document) -> Event | None:
    """A new document (flushed, ``received``) matching ``original`` (see ``scriptorium.dedup``).

    A completed original's result is reused at once; otherwise the document waits in
    ``received`` without preparation until the original ends.
    """
    if original.state == DocumentState.COMPLETED:
        return complete_as_duplicate(uow, document, original)
    document.duplicate_of = original.id
    return None


def complete_as_duplicate(uow: UnitOfWork, document: Document, original: Document) -> Event:
    """Complete ``document`` with ``original``'s result: no pages of its own, no engine work, zero tokens."""
    document.duplicate_of = original.id
    document.kind = original.kind
    document.page_count = original.page_count
    document.pdf_password = None
    document.started_at = func.now()
    return _enter_terminal(uow, document, DocumentState.COMPLETED)
