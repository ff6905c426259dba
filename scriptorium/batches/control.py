"""What a client does to a batch: create it, close it, cancel it, retry its failures.

Lock order matches document completion (document, then batch): cancelling first marks the
batch under its own lock, commits, then cancels each document in its own transaction, and a
last transaction completes the batch if no document did.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.acceptance import DocumentOptions
from scriptorium.batches.completion import finish_batch_if_done, lock_batch
from scriptorium.batches.states import BatchKind, BatchState, IntakeReason, ItemState
from scriptorium.db.models import Batch, BatchItem, Document, Event
from scriptorium.db.session import transaction
from scriptorium.idempotency import commit_or_replay
from scriptorium.lifecycle import TERMINAL_DOCUMENT_VALUES, cancel_document, lock_document
from scriptorium.states import DocumentState

RETRYABLE_ITEM_REASONS = (IntakeReason.SOURCE_UNAVAILABLE.value, IntakeReason.INTAKE_EXHAUSTED.value)
_RETRYABLE_BATCH_STATES = (
    BatchState.OPEN.value,
    BatchState.EXPANDING.value,
    BatchState.RUNNING.value,
    BatchState.COMPLETED.value,
)


class BatchConflict(Exception):
    """The batch is not in a state that allows the request."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class NewBatch:
    name: str
    kind: BatchKind
    source: dict[str, Any]  # where inputs come from; names a source, never holds credentials
    options: DocumentOptions
    webhook_url: str | None = None
    idempotency_key: str | None = None
    request_id: str | None = None


def batch_object_key(tenant_id: uuid.UUID, batch_id: uuid.UUID, name: str) -> str:
    """Where a batch's own uploads live (its archive or manifest), next to the tenant's raw files."""
    return f"{tenant_id}/batches/{batch_id}/{name}"


def own_batch(session: Session, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> Batch | None:
    return session.execute(
        select(Batch).where(Batch.id == batch_id, Batch.tenant_id == tenant_id)
    ).scalar_one_or_none()


def create_batch(
    session: Session, tenant_id: uuid.UUID, new: NewBatch, *, batch_id: uuid.UUID | None = None
) -> tuple[Batch, bool]:
    """Insert and commit a batch; returns (batch, replayed) — replayed when the key was used before."""
    expanding = new.kind is not BatchKind.UPLOADS
    batch = Batch(
        id=batch_id or uuid.uuid4(),
        tenant_id=tenant_id,
        name=new.name,
        kind=new.kind.value,
        state=(BatchState.EXPANDING if expanding else BatchState.OPEN).value,
        idempotency_key=new.idempotency_key,
        request_id=new.request_id,
        source=new.source,
        options=new.options.model_dump(mode="json", exclude_none=True),
        webhook_url=new.webhook_url,
        intake_dispatched_at=func.now() if expanding else None,
    )
    session.add(batch)
    answered, replayed = commit_or_replay(session, batch)
    if not replayed:
        session.refresh(answered)
    return answered, replayed


def close_batch(session: Session, batch_id: uuid.UUID) -> Event | None:
    """An uploads batch takes no more files; it completes once its documents have."""
    batch = lock_batch(session, batch_id)
    if batch is None:
        return None
    if batch.state != BatchState.OPEN.value:
        raise BatchConflict("batch_not_open", f"the batch is {batch.state}; only an open batch can be closed")
    batch.state = BatchState.RUNNING.value
    batch.inputs_complete = True
    batch.updated_at = func.now()
    session.flush()
    return finish_batch_if_done(session, batch_id)


def cancel_batch(sessions: sessionmaker[Session], batch_id: uuid.UUID) -> Batch:
    """Stop intake and cancel every unfinished document; raises BatchConflict when already final."""
    with transaction(sessions) as session:
        batch = lock_batch(session, batch_id)
        assert batch is not None
        if BatchState(batch.state).is_terminal:
            raise BatchConflict("already_terminal", f"the batch is already {batch.state}")
        batch.state = BatchState.CANCELLING.value
        batch.cancel_requested_at = func.now()
        batch.intake_lease_expires_at = None
        batch.updated_at = func.now()
        session.execute(
            update(BatchItem)
            .where(BatchItem.batch_id == batch_id, BatchItem.state == ItemState.PENDING.value)
            .values(
                state=ItemState.CANCELLED.value,
                error_code=IntakeReason.CANCELLED.value,
                error_message="the batch was cancelled before this input was ingested",
                updated_at=func.now(),
            )
        )
    with sessions() as session:
        unfinished = list(
            session.execute(
                select(Document.id).where(
                    Document.batch_id == batch_id, Document.state.not_in(TERMINAL_DOCUMENT_VALUES)
                )
            ).scalars()
        )
    for document_id in unfinished:
        with transaction(sessions) as session:
            document = lock_document(session, document_id)
            if document is not None:
                cancel_document(session, document)
    with transaction(sessions) as session:
        finish_batch_if_done(session, batch_id)
        batch = session.get(Batch, batch_id, populate_existing=True)
        assert batch is not None
        return batch


@dataclass
class Retried:
    documents: list[Document] = field(default_factory=list)  # new attempts, to send ``prepare`` for
    inputs_reset: int = 0  # inputs that failed to be fetched, pending again
    needs_intake: bool = False

    @property
    def count(self) -> int:
        return len(self.documents) + self.inputs_reset


def retry_failed(session: Session, batch_id: uuid.UUID, *, include_partial: bool) -> Retried:
    """A new attempt (a new document) for each input whose current document failed; the failed
    document stays as it is, listed in the input's history. Starts the batch's next round."""
    batch = lock_batch(session, batch_id)
    assert batch is not None
    if batch.state not in _RETRYABLE_BATCH_STATES:
        raise BatchConflict("batch_not_retryable", f"a {batch.state} batch cannot be retried")
    states = [DocumentState.FAILED.value] + ([DocumentState.PARTIAL.value] if include_partial else [])
    rows = session.execute(
        select(BatchItem, Document)
        .join(Document, Document.id == BatchItem.document_id)
        .where(BatchItem.batch_id == batch_id, Document.state.in_(states))
        .order_by(BatchItem.seq)
        .with_for_update(of=BatchItem)
    ).all()
    retried = Retried(documents=[_next_attempt(failed) for _, failed in rows])
    session.add_all(retried.documents)
    session.flush()  # the new documents exist before the inputs point at them
    for (item, failed), attempt in zip(rows, retried.documents, strict=True):
        item.history = [*item.history, _history_entry(failed)]
        item.document_id = attempt.id
        item.updated_at = func.now()
    retried.inputs_reset = session.execute(
        update(BatchItem)
        .where(
            BatchItem.batch_id == batch_id,
            BatchItem.state == ItemState.REJECTED.value,
            BatchItem.error_code.in_(RETRYABLE_ITEM_REASONS),
        )
        .values(
            state=ItemState.PENDING.value,
            fetch_attempts=0,
            error_code=None,
            error_message=None,
            updated_at=func.now(),
        )
    ).rowcount  # type: ignore[attr-defined]
    if not retried.count:
        return retried
    batch.round += 1
    batch.finished_at = None
    batch.updated_at = func.now()
    if retried.inputs_reset and batch.kind != BatchKind.UPLOADS.value:
        batch.state = BatchState.EXPANDING.value
        batch.intake_attempts = 0
        batch.intake_dispatched_at = func.now()
        retried.needs_intake = True
    elif batch.state == BatchState.COMPLETED.value:
        batch.state = BatchState.RUNNING.value
    session.flush()
    return retried


def _next_attempt(failed: Document) -> Document:
    """A fresh document reading the same stored bytes with the same options."""
    return Document(
        id=uuid.uuid4(),
        tenant_id=failed.tenant_id,
        state=DocumentState.RECEIVED.value,
        filename=failed.filename,
        size_bytes=failed.size_bytes,
        sha256=failed.sha256,
        raw_key=failed.raw_key,
        page_selection=failed.page_selection,
        task=failed.task,
        routing_policy=failed.routing_policy,
        client_metadata=failed.client_metadata,
        request_id=failed.request_id,
        webhook_url=failed.webhook_url,
        priority=failed.priority,
        dedup_fingerprint=failed.dedup_fingerprint,
        batch_id=failed.batch_id,
        prepare_dispatched_at=func.now(),
    )


def _history_entry(document: Document) -> dict[str, Any]:
    return {
        "document_id": str(document.id),
        "state": document.state,
        "error_code": document.error_code,
        "error_message": document.error_message,
        "finished_at": document.finished_at.isoformat() if document.finished_at else None,
    }
