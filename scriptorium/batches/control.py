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
from sqlalchemy.orm import Session

from scriptorium.acceptance import DocumentOptions
from scriptorium.batches.completion import finish_batch_if_done, lock_batch
from scriptorium.batches.leftovers import discard_leftovers
from scriptorium.batches.states import BatchKind, BatchState, IntakeReason, ItemState
from scriptorium.db.models import Batch, BatchItem, Document, Event
from scriptorium.errors import Conflict
from scriptorium.idempotency import insert_or_replay
from scriptorium.lifecycle.documents import cancel_document, lock_document
from scriptorium.states import TERMINAL_DOCUMENT_STATES, DocumentState, Lane
from scriptorium.storage import ObjectStore
from scriptorium.unit_of_work import UnitOfWork

RETRYABLE_ITEM_REASONS = (IntakeReason.SOURCE_UNAVAILABLE, IntakeReason.INTAKE_EXHAUSTED)
_RETRYABLE_BATCH_STATES = (
    BatchState.OPEN,
    BatchState.EXPANDING,
    BatchState.RUNNING,
    BatchState.COMPLETED,
)


class BatchConflict(Conflict):
    """The batch is not in a state that allows the request."""


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
    uow: UnitOfWork, tenant_id: uuid.UUID, new: NewBatch, *, batch_id: uuid.UUID | None = None
) -> tuple[Batch, bool]:
    """Insert a batch and, unless it takes uploads, register its intake run; returns (batch,
    replayed) — replayed when the key was used before."""
    expanding = new.kind is not BatchKind.UPLOADS
    batch = Batch(
        id=batch_id or uuid.uuid4(),
        tenant_id=tenant_id,
        name=new.name,
        kind=new.kind.value,
        state=BatchState.EXPANDING if expanding else BatchState.OPEN,
        idempotency_key=new.idempotency_key,
        request_id=new.request_id,
        source=new.source,
        options=new.options.model_dump(mode="json", exclude_none=True),
        webhook_url=new.webhook_url,
        intake_dispatched_at=func.now() if expanding else None,
    )
    answered, replayed = insert_or_replay(uow.session, batch)
    if not replayed:
        uow.session.refresh(answered)
        if expanding:
            uow.outbox.expand_batch(batch.id, Lane(new.options.priority or Lane.BULK))
    return answered, replayed


def add_uploaded_item(session: Session, batch_id: uuid.UUID, name: str, document: Document) -> None:
    """Record a file uploaded into an open batch as its next input; the batch is locked after the
    document's insert (the fleet's order: document, then batch)."""
    batch = lock_batch(session, batch_id)
    assert batch is not None
    if batch.state != BatchState.OPEN:
        raise BatchConflict("batch_not_open", f"the batch is {batch.state}; files go into an open batch only")
    batch.inputs_total += 1
    session.add(
        BatchItem(
            batch_id=batch_id,
            seq=batch.inputs_total,
            name=name,
            origin={"upload": True},
            state=ItemState.INGESTED,
            size_bytes=document.size_bytes,
            sha256=document.sha256,
            document_id=document.id,
            history=[],
            fetch_attempts=0,
        )
    )
    session.flush()


def close_batch(session: Session, batch_id: uuid.UUID) -> Event | None:
    """An uploads batch takes no more files; it completes once its documents have."""
    batch = lock_batch(session, batch_id)
    if batch is None:
        return None
    if batch.state != BatchState.OPEN:
        raise BatchConflict("batch_not_open", f"the batch is {batch.state}; only an open batch can be closed")
    batch.state = BatchState.RUNNING
    batch.inputs_complete = True
    batch.updated_at = func.now()
    session.flush()
    return finish_batch_if_done(session, batch_id)


def cancel_batch(uow: UnitOfWork, batch_id: uuid.UUID, *, store: ObjectStore | None = None) -> Batch:
    """Stop intake and cancel every unfinished document; raises BatchConflict when already final.

    A use case of its own units: the batch is marked under its lock and committed first, then
    each document is cancelled and committed on its own (the fleet's lock order is document,
    then batch), and a last commit completes the batch if no document's cancellation did. With
    ``store``, what only the cancelled inputs referenced is then deleted from it
    (:mod:`scriptorium.batches.leftovers`).
    """
    session = uow.session
    batch = lock_batch(session, batch_id)
    assert batch is not None
    if batch.state.is_terminal:
        raise BatchConflict("already_terminal", f"the batch is already {batch.state}")
    batch.state = BatchState.CANCELLING
    batch.cancel_requested_at = func.now()
    batch.intake_lease_expires_at = None
    batch.updated_at = func.now()
    session.execute(
        update(BatchItem)
        .where(BatchItem.batch_id == batch_id, BatchItem.state == ItemState.PENDING)
        .values(
            state=ItemState.CANCELLED,
            error_code=IntakeReason.CANCELLED,
            error_message="the batch was cancelled before this input was ingested",
            updated_at=func.now(),
        )
    )
    uow.commit()
    unfinished = list(
        session.execute(
            select(Document.id).where(
                Document.batch_id == batch_id, Document.state.not_in(TERMINAL_DOCUMENT_STATES)
            )
        ).scalars()
    )
    uow.commit()
    for document_id in unfinished:
        document = lock_document(session, document_id)
        if document is not None:
            cancel_document(uow, document)
        uow.commit()
    finish_batch_if_done(session, batch_id)
    uow.commit()
    if store is not None:
        discard_leftovers(session, store, batch_id)
    cancelled = session.get(Batch, batch_id, populate_existing=True)
    assert cancelled is not None
    return cancelled


@dataclass
class Retried:
    documents: list[Document] = field(default_factory=list)  # new attempts, to send ``prepare`` for
    inputs_reset: int = 0  # inputs that failed to be fetched, pending again

    @property
    def count(self) -> int:
        return len(self.documents) + self.inputs_reset


def retry_failed(uow: UnitOfWork, batch_id: uuid.UUID, *, include_partial: bool) -> Retried:
    """A new attempt (a new document) for each input whose current document failed; the failed
    document stays as it is, listed in the input's history. Starts the batch's next round and
    registers the new documents' ``prepare`` (and the intake run, when inputs were reset)."""
    session = uow.session
    batch = lock_batch(session, batch_id)
    assert batch is not None
    if batch.state not in _RETRYABLE_BATCH_STATES:
        raise BatchConflict("batch_not_retryable", f"a {batch.state} batch cannot be retried")
    states = [DocumentState.FAILED] + ([DocumentState.PARTIAL] if include_partial else [])
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
            BatchItem.state == ItemState.REJECTED,
            BatchItem.error_code.in_(RETRYABLE_ITEM_REASONS),
        )
        .values(
            state=ItemState.PENDING,
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
    if retried.inputs_reset and batch.kind != BatchKind.UPLOADS:
        batch.state = BatchState.EXPANDING
        batch.intake_attempts = 0
        batch.intake_dispatched_at = func.now()
        uow.outbox.expand_batch(batch.id)
    elif batch.state == BatchState.COMPLETED:
        batch.state = BatchState.RUNNING
    session.flush()
    for document in retried.documents:
        uow.outbox.prepare(document.id, document.request_id, Lane(document.priority))
    return retried


def _next_attempt(failed: Document) -> Document:
    """A fresh document reading the same stored bytes with the same options."""
    return Document(
        id=uuid.uuid4(),
        tenant_id=failed.tenant_id,
        state=DocumentState.RECEIVED,
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
        model=failed.model,
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
