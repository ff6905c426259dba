"""Reading a batch: counts by state, outcomes, token totals, its documents and its inputs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scriptorium.batches.outcomes import empty_outcomes, item_outcome
from scriptorium.db.models import Batch, BatchItem, Document

TOKEN_FIELDS = ("vision", "valid", "placeholders", "prompt", "output")
_TOKEN_COLUMNS = (
    Document.vision_tokens,
    Document.valid_tokens,
    Document.placeholder_tokens,
    Document.prompt_tokens,
    Document.output_tokens,
)


@dataclass
class BatchStatus:
    items: dict[str, int] = field(default_factory=dict)  # inputs by item state
    documents: dict[str, int] = field(default_factory=dict)  # current documents by state
    outcomes: dict[str, int] = field(default_factory=empty_outcomes)
    tokens: dict[str, int] = field(default_factory=dict)  # every document of the batch, retries included
    pages_total: int = 0  # pages selected in the current documents
    ocr_attempts: int = 0
    escalations: int = 0
    engine_seconds: float = 0.0

    @property
    def inputs(self) -> int:
        return sum(self.items.values())

    @property
    def finished_inputs(self) -> int:
        return sum(count for name, count in self.outcomes.items() if name not in ("pending", "in_progress"))


def batch_status(session: Session, batch_id: uuid.UUID) -> BatchStatus:
    status = BatchStatus()
    rows = session.execute(
        select(BatchItem.state, Document.state, Document.duplicate_of.is_not(None), func.count())
        .select_from(BatchItem)
        .outerjoin(Document, Document.id == BatchItem.document_id)
        .where(BatchItem.batch_id == batch_id)
        .group_by(BatchItem.state, Document.state, Document.duplicate_of.is_not(None))
    ).all()
    for item_state, document_state, duplicate, count in rows:
        status.items[item_state] = status.items.get(item_state, 0) + count
        if document_state is not None:
            status.documents[document_state] = status.documents.get(document_state, 0) + count
        outcome = item_outcome(item_state, document_state, duplicate=bool(duplicate))
        status.outcomes[outcome.value] += count
    totals = session.execute(
        select(
            *(func.coalesce(func.sum(column), 0) for column in _TOKEN_COLUMNS),
            func.coalesce(func.sum(Document.ocr_attempts), 0),
            func.coalesce(func.sum(Document.escalations), 0),
            func.coalesce(func.sum(Document.engine_seconds), 0.0),
        ).where(Document.batch_id == batch_id)
    ).one()
    status.tokens = {name: int(value) for name, value in zip(TOKEN_FIELDS, totals[:5], strict=True)}
    status.ocr_attempts, status.escalations = int(totals[5]), int(totals[6])
    status.engine_seconds = float(totals[7])
    status.pages_total = int(
        session.execute(
            select(func.coalesce(func.sum(Document.pages_total), 0))
            .select_from(BatchItem)
            .join(Document, Document.id == BatchItem.document_id)
            .where(BatchItem.batch_id == batch_id)
        ).scalar_one()
    )
    return status


def event_payload(session: Session, batch: Batch) -> dict[str, Any]:
    """The thin payload of a batch event: ids, state, counts and token totals, never text."""
    status = batch_status(session, batch.id)
    return {
        "batch_id": str(batch.id),
        "tenant_id": str(batch.tenant_id),
        "name": batch.name,
        "kind": batch.kind,
        "state": batch.state,
        "round": batch.round,
        "inputs": status.inputs,
        "outcomes": status.outcomes,
        "documents": status.documents,
        "tokens": status.tokens,
        "error_code": batch.error_code,
    }


def current_documents(
    session: Session, batch_id: uuid.UUID, *, state: str | None, after_seq: int, limit: int
) -> list[tuple[int, Document]]:
    """The batch's current documents (latest attempt of each input), in input order after ``after_seq``."""
    query = (
        select(BatchItem.seq, Document)
        .join(Document, Document.id == BatchItem.document_id)
        .where(BatchItem.batch_id == batch_id, BatchItem.seq > after_seq)
    )
    if state is not None:
        query = query.where(Document.state == state)
    rows = session.execute(query.order_by(BatchItem.seq).limit(limit)).all()
    return [(seq, document) for seq, document in rows]


def list_items(
    session: Session, batch_id: uuid.UUID, *, after_seq: int, limit: int, state: str | None = None
) -> list[tuple[BatchItem, Document | None]]:
    query = (
        select(BatchItem, Document)
        .outerjoin(Document, Document.id == BatchItem.document_id)
        .where(BatchItem.batch_id == batch_id, BatchItem.seq > after_seq)
    )
    if state is not None:
        query = query.where(BatchItem.state == state)
    rows = session.execute(query.order_by(BatchItem.seq).limit(limit)).all()
    return [(item, document) for item, document in rows]
