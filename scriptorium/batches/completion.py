"""A batch's guarded terminal transition: exactly one event per round, with its webhook deliveries.

The transaction that makes the batch's last unfinished document terminal holds that document's
row lock and then takes the batch row lock (lock order: pages, document, batch); it finds no
unfinished document and no pending input, flips the batch and writes the event. Two documents
finishing at once serialise on the batch row, and the second sees the first one's commit, so
exactly one of them completes the batch. A unique (batch, round, type) index backs this up.

:mod:`scriptorium.lifecycle.documents` imports this module; it must not import that one back.
"""

from __future__ import annotations

import uuid

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from scriptorium.batches.queries import event_payload
from scriptorium.batches.states import BatchState, ItemState
from scriptorium.db.models import Batch, BatchItem, Document, Event
from scriptorium.states import TERMINAL_DOCUMENT_STATES, EventType
from scriptorium.webhooks.fanout import create_deliveries

_FINISHING_STATES = (BatchState.RUNNING, BatchState.CANCELLING)
_EVENT_FOR = {
    BatchState.COMPLETED: EventType.BATCH_COMPLETED,
    BatchState.FAILED: EventType.BATCH_FAILED,
    BatchState.CANCELLED: EventType.BATCH_CANCELLED,
}


def lock_batch(session: Session, batch_id: uuid.UUID) -> Batch | None:
    """The batch row, locked FOR NO KEY UPDATE: it serialises everyone who changes the batch, yet
    does not wait for transactions that merely insert rows referencing it (their FK key-share
    lock), which would otherwise deadlock two concurrent uploads into one batch."""
    return session.execute(
        select(Batch)
        .where(Batch.id == batch_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)  # what the lock protects, not what was cached
    ).scalar_one_or_none()


def has_unfinished_documents(session: Session, batch_id: uuid.UUID) -> bool:
    unfinished = exists().where(
        Document.batch_id == batch_id, Document.state.not_in(TERMINAL_DOCUMENT_STATES)
    )
    return bool(session.execute(select(unfinished)).scalar_one())


def has_pending_items(session: Session, batch_id: uuid.UUID) -> bool:
    pending = exists().where(BatchItem.batch_id == batch_id, BatchItem.state == ItemState.PENDING)
    return bool(session.execute(select(pending)).scalar_one())


def finish_batch_if_done(session: Session, batch_id: uuid.UUID) -> Event | None:
    """Flip a running (or cancelling) batch to its end once every input is final; locks the batch."""
    batch = lock_batch(session, batch_id)
    if batch is None or batch.state not in _FINISHING_STATES:
        return None
    if has_unfinished_documents(session, batch_id) or has_pending_items(session, batch_id):
        return None
    cancelled = batch.cancel_requested_at is not None
    return enter_terminal(session, batch, BatchState.CANCELLED if cancelled else BatchState.COMPLETED)


def enter_terminal(session: Session, batch: Batch, state: BatchState) -> Event:
    """Move a locked batch to a terminal state and record its event (and deliveries) for this round."""
    batch.state = state
    batch.finished_at = func.now()
    batch.updated_at = func.now()
    batch.intake_lease_expires_at = None
    session.flush()
    session.refresh(batch)
    event = Event(
        tenant_id=batch.tenant_id,
        batch_id=batch.id,
        batch_round=batch.round,
        type=_EVENT_FOR[state],
        payload=event_payload(session, batch),
    )
    session.add(event)
    session.flush()
    create_deliveries(session, event, batch)
    return event
