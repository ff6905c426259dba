"""The database side of batch intake: who may run it, which inputs exist, and each input's document.

One intake run at a time per batch holds a lease on the batch row (like document preparation);
runs are repeatable: inputs have deterministic sequence numbers, an input's first document has
an id derived from (batch, seq), and every step is conditional on the rows' current state, so a
run that dies is simply run again. A run that uses up its time budget hands over to the next
message. A document's transaction checks under the batch's row lock that the batch is still
``expanding``, so a cancellation (which takes that lock to stop intake) never misses one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from scriptorium.acceptance import Accepted, Dedup, DocumentSpec, accept_document, new_document
from scriptorium.batches.completion import enter_terminal, finish_batch_if_done, lock_batch
from scriptorium.batches.states import BatchState, IntakeReason, ItemState
from scriptorium.db.models import Batch, BatchItem, Document, Event
from scriptorium.leases import expired, lease_until, seconds_ago
from scriptorium.states import DocumentState
from scriptorium.storage import StoredObject, raw_key
from scriptorium.unit_of_work import UnitOfWork

_NAMESPACE = uuid.UUID("5d0c6a43-1f6e-4be8-9a0f-2f3bd4d3c1a7")
INSERT_ROWS = 1000  # inputs per INSERT: 12 columns each, far below Postgres's 65,535 bind parameters


def first_document_id(batch_id: uuid.UUID, seq: int) -> uuid.UUID:
    """The id of an input's first document: the same on every run, so its raw key is too."""
    return uuid.uuid5(_NAMESPACE, f"{batch_id}:{seq}")


@dataclass(frozen=True)
class NewItem:
    name: str
    origin: dict[str, Any]  # {"staged": key} or {"source", "bucket", "key", "etag"}
    options: dict[str, Any] | None = None
    state: ItemState = ItemState.PENDING
    size_bytes: int | None = None
    sha256: str | None = None
    error_code: str | None = None
    error_message: str | None = None


def claim_intake(session: Session, batch_id: uuid.UUID, *, lease_s: int, max_attempts: int) -> Batch | None:
    """Take an expanding batch whose intake nobody runs; None for a duplicate or stale message."""
    row = session.execute(
        update(Batch)
        .where(
            Batch.id == batch_id,
            Batch.state == BatchState.EXPANDING,
            Batch.intake_attempts < max_attempts,
            or_(Batch.intake_lease_expires_at.is_(None), expired(Batch.intake_lease_expires_at)),
        )
        .values(
            intake_attempts=Batch.intake_attempts + 1,
            intake_lease_expires_at=lease_until(lease_s),
            updated_at=func.now(),
        )
        .returning(Batch.id)
    ).first()
    if row is None:
        return None
    return session.get(Batch, batch_id, populate_existing=True)


def hand_over(session: Session, batch_id: uuid.UUID, *, failed: bool = False) -> bool:
    """End a run early and release the lease. After a run that used its budget the caller sends
    the next message at once; otherwise the sweeper sends it once it counts as lost, which is the
    back-off after a failure. Only a ``failed`` run keeps counting towards giving the batch up."""
    values: dict[str, Any] = {
        "intake_lease_expires_at": None,
        "intake_dispatched_at": func.now(),
        "updated_at": func.now(),
    }
    if not failed:
        values["intake_attempts"] = 0
    result = session.execute(
        update(Batch).where(Batch.id == batch_id, Batch.state == BatchState.EXPANDING).values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def add_items(
    session: Session, batch_id: uuid.UUID, items: list[NewItem], *, marker: str | None, complete: bool
) -> int | None:
    """Append inputs after the batch's last one (under its row lock), in statements of
    :data:`INSERT_ROWS`, all in the caller's transaction; returns how many were added, or None
    when the batch is no longer ``expanding`` (nothing is added)."""
    batch = lock_batch(session, batch_id)
    if batch is None or batch.state != BatchState.EXPANDING:
        return None
    first = batch.inputs_total + 1
    for start in range(0, len(items), INSERT_ROWS):  # one statement stays under 65,535 parameters
        session.execute(
            insert(BatchItem)
            .values(
                [
                    {
                        "batch_id": batch_id,
                        "seq": first + offset,
                        "name": item.name,
                        "origin": item.origin,
                        "options": item.options,
                        "state": item.state.value,
                        "size_bytes": item.size_bytes,
                        "sha256": item.sha256,
                        "error_code": item.error_code,
                        "error_message": item.error_message,
                        "history": [],
                        "fetch_attempts": 0,
                    }
                    for offset, item in enumerate(items[start : start + INSERT_ROWS], start=start)
                ]
            )
            .on_conflict_do_nothing()
        )
    batch.inputs_total += len(items)
    batch.intake_marker = marker
    batch.inputs_complete = complete
    batch.updated_at = func.now()
    return len(items)


def awaiting_preparation(session: Session, batch_id: uuid.UUID) -> int:
    """The batch's documents that are, or will be, prepare messages in the broker."""
    return int(
        session.execute(
            select(func.count())
            .select_from(Document)
            .where(
                Document.batch_id == batch_id,
                Document.state.in_((DocumentState.RECEIVED, DocumentState.PREPARING)),
                Document.duplicate_of.is_(None),
            )
        ).scalar_one()
    )


def pending_items(session: Session, batch_id: uuid.UUID, *, after_seq: int, limit: int) -> list[BatchItem]:
    return list(
        session.execute(
            select(BatchItem)
            .where(
                BatchItem.batch_id == batch_id,
                BatchItem.state == ItemState.PENDING,
                BatchItem.seq > after_seq,
            )
            .order_by(BatchItem.seq)
            .limit(limit)
        ).scalars()
    )


def _lock_expanding(session: Session, batch_id: uuid.UUID) -> bool:
    state = session.execute(
        select(Batch.state).where(Batch.id == batch_id).with_for_update(key_share=True)
    ).scalar_one_or_none()
    return state == BatchState.EXPANDING


def ingest_item(
    uow: UnitOfWork,
    *,
    batch: Batch,
    item: BatchItem,
    stored: StoredObject,
    spec: DocumentSpec,
    dedup: Dedup,
) -> Accepted | None:
    """Create the input's document from its bytes (stored under :func:`input_key`) and send
    ``prepare``; None when the batch left ``expanding`` or the input was handled meanwhile."""
    document_id = first_document_id(batch.id, item.seq)
    if stored.key != input_key(batch, item.seq):
        raise ValueError("an input's bytes must be stored under input_key()")
    if uow.session.get(Document, document_id) is not None:  # a run that died after its commit
        uow.rollback()
        return None
    document = new_document(
        document_id=document_id,
        tenant_id=batch.tenant_id,
        stored=stored,
        spec=spec,
        filename=item.name.rsplit("/", 1)[-1][:1024],
        request_id=batch.request_id,
        batch_id=batch.id,
    )

    def link(session: Session, created: Document) -> None:
        # The batch is locked after the insert, like every transaction that finishes a document
        # (document, then batch): locking it first would deadlock with the completion of the
        # original a duplicate points at.
        if not _lock_expanding(session, batch.id):
            raise _AlreadyHandled
        linked = session.execute(
            update(BatchItem)
            .where(
                BatchItem.batch_id == batch.id,
                BatchItem.seq == item.seq,
                BatchItem.state == ItemState.PENDING,
            )
            .values(
                state=ItemState.INGESTED,
                document_id=created.id,
                size_bytes=stored.size,
                sha256=stored.sha256,
                updated_at=func.now(),
            )
        )
        if not linked.rowcount:  # type: ignore[attr-defined]
            raise _AlreadyHandled

    try:
        return accept_document(uow, document, dedup=dedup, before_commit=link)
    except _AlreadyHandled:
        uow.rollback()
        return None


class _AlreadyHandled(Exception):
    pass


def input_key(batch: Batch, seq: int) -> str:
    """Where an input's bytes are stored: its first document's raw key, the same on every run."""
    return raw_key(batch.tenant_id, first_document_id(batch.id, seq))


def reject_item(
    session: Session, batch_id: uuid.UUID, seq: int, reason: IntakeReason | str, message: str
) -> None:
    session.execute(
        update(BatchItem)
        .where(BatchItem.batch_id == batch_id, BatchItem.seq == seq, BatchItem.state == ItemState.PENDING)
        .values(
            state=ItemState.REJECTED,
            error_code=str(reason),
            error_message=message,
            updated_at=func.now(),
        )
    )


def count_fetch_failure(
    session: Session, batch_id: uuid.UUID, seq: int, *, max_attempts: int, message: str
) -> bool:
    """Note a transient failure to fetch an input; rejects it once attempts run out (returns True)."""
    attempts = session.execute(
        update(BatchItem)
        .where(BatchItem.batch_id == batch_id, BatchItem.seq == seq, BatchItem.state == ItemState.PENDING)
        .values(fetch_attempts=BatchItem.fetch_attempts + 1, updated_at=func.now())
        .returning(BatchItem.fetch_attempts)
    ).scalar_one_or_none()
    if attempts is not None and attempts >= max_attempts:
        reject_item(session, batch_id, seq, IntakeReason.SOURCE_UNAVAILABLE, message)
        return True
    return False


def finish_intake(session: Session, batch_id: uuid.UUID) -> Event | None:
    """Every input is known and none is pending: the batch runs (and may already be done)."""
    batch = lock_batch(session, batch_id)
    if batch is None or batch.state != BatchState.EXPANDING or not batch.inputs_complete:
        return None
    pending = session.execute(
        select(func.count())
        .select_from(BatchItem)
        .where(BatchItem.batch_id == batch_id, BatchItem.state == ItemState.PENDING)
    ).scalar_one()
    if pending:
        return None
    batch.state = BatchState.RUNNING
    batch.intake_lease_expires_at = None
    batch.intake_attempts = 0
    batch.updated_at = func.now()
    session.flush()
    return finish_batch_if_done(session, batch_id)


def fail_intake(session: Session, batch_id: uuid.UUID, reason: IntakeReason, message: str) -> Event | None:
    """Intake cannot go on. With no document made yet the batch fails; otherwise the inputs left
    are rejected with the reason and the batch runs to completion with what it has."""
    batch = lock_batch(session, batch_id)
    if batch is None or batch.state != BatchState.EXPANDING:
        return None
    session.execute(
        update(BatchItem)
        .where(BatchItem.batch_id == batch_id, BatchItem.state == ItemState.PENDING)
        .values(
            state=ItemState.REJECTED,
            error_code=reason.value,
            error_message=message,
            updated_at=func.now(),
        )
    )
    batch.error_code = reason.value
    batch.error_message = message
    batch.inputs_complete = True
    batch.intake_lease_expires_at = None
    made_documents = session.execute(
        select(func.count()).select_from(Document).where(Document.batch_id == batch_id)
    ).scalar_one()
    if not made_documents:
        return enter_terminal(session, batch, BatchState.FAILED)
    batch.state = BatchState.RUNNING
    session.flush()
    return finish_batch_if_done(session, batch_id)


def stalled_intake(
    session: Session, *, lost_after_s: int, max_attempts: int
) -> tuple[list[uuid.UUID], list[Event]]:
    """Expanding batches whose message was lost or whose run died: ids to re-send, and events of
    batches failed because their intake kept dying."""
    rows = session.execute(
        select(Batch.id, Batch.intake_attempts)
        .where(
            Batch.state == BatchState.EXPANDING,
            or_(
                and_(
                    Batch.intake_lease_expires_at.is_(None),
                    func.coalesce(Batch.intake_dispatched_at, Batch.created_at) < seconds_ago(lost_after_s),
                ),
                expired(Batch.intake_lease_expires_at),
            ),
        )
        .with_for_update(skip_locked=True, key_share=True)
    ).all()
    resend: list[uuid.UUID] = []
    events: list[Event] = []
    for batch_id, attempts in rows:
        if attempts >= max_attempts:
            event = fail_intake(
                session, batch_id, IntakeReason.INTAKE_EXHAUSTED, "intake runs kept dying (crash or timeout)"
            )
            if event is not None:
                events.append(event)
            continue
        session.execute(
            update(Batch)
            .where(Batch.id == batch_id)
            .values(intake_dispatched_at=func.now(), intake_lease_expires_at=None)
        )
        resend.append(batch_id)
    return resend, events
