"""The reconciliation report: every input of a batch and how it ended, as JSON or CSV.

One row per input in input order — done, partial, failed (with the reason), duplicate (with the
document whose result it reuses), rejected or skipped at intake (with the reason), cancelled,
or still pending / in progress — so inputs always equal the sum of the outcomes. Rows are read
and written a chunk at a time, so a report of any size streams in constant memory.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scriptorium.batches.outcomes import item_outcome
from scriptorium.batches.queries import BatchStatus, list_items
from scriptorium.db.models import Batch, BatchItem, Document, Page
from scriptorium.states import SUCCESSFUL_PAGE_STATES, UNSUCCESSFUL_PAGE_STATES

CHUNK = 1000
_SUCCEEDED = {state.value for state in SUCCESSFUL_PAGE_STATES}
_UNSUCCESSFUL = {state.value for state in UNSUCCESSFUL_PAGE_STATES}


@dataclass(frozen=True)
class ReportRow:
    seq: int
    input: str
    outcome: str
    reason: str | None
    message: str | None
    document_id: str | None
    document_state: str | None
    duplicate_of: str | None
    size_bytes: int | None
    sha256: str | None
    pages_total: int | None
    pages_done: int | None
    pages_failed: int | None
    vision_tokens: int | None
    output_tokens: int | None
    attempts: int  # documents made for this input, retries included
    previous_documents: list[str]


CSV_COLUMNS = [name for name in ReportRow.__dataclass_fields__ if name != "previous_documents"] + [
    "previous_documents"
]


def _page_counts(session: Session, document_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
    """(succeeded, failed or dead) pages of each document."""
    if not document_ids:
        return {}
    rows = session.execute(
        select(Page.document_id, Page.state, func.count())
        .where(Page.document_id.in_(document_ids))
        .group_by(Page.document_id, Page.state)
    ).all()
    counts: dict[uuid.UUID, list[int]] = {}
    for document_id, state, count in rows:
        pair = counts.setdefault(document_id, [0, 0])
        if state in _SUCCEEDED:
            pair[0] += count
        elif state in _UNSUCCESSFUL:
            pair[1] += count
    return {document_id: (pair[0], pair[1]) for document_id, pair in counts.items()}


def _row(item: BatchItem, document: Document | None, pages: tuple[int, int] | None) -> ReportRow:
    history = [str(entry["document_id"]) for entry in item.history]
    duplicate_of = document.duplicate_of if document is not None else None
    outcome = item_outcome(
        item.state, document.state if document else None, duplicate=duplicate_of is not None
    )
    reason = item.error_code or (document.error_code if document is not None else None)
    message = item.error_message or (document.error_message if document is not None else None)
    return ReportRow(
        seq=item.seq,
        input=item.name,
        outcome=outcome.value,
        reason=reason,
        message=message,
        document_id=str(document.id) if document is not None else None,
        document_state=document.state if document is not None else None,
        duplicate_of=str(duplicate_of) if duplicate_of is not None else None,
        size_bytes=item.size_bytes,
        sha256=item.sha256,
        pages_total=document.pages_total if document is not None else None,
        pages_done=pages[0] if pages else (0 if document is not None else None),
        pages_failed=pages[1] if pages else (0 if document is not None else None),
        vision_tokens=document.vision_tokens if document is not None else None,
        output_tokens=document.output_tokens if document is not None else None,
        attempts=len(history) + (1 if document is not None else 0),
        previous_documents=history,
    )


def report_rows(session: Session, batch_id: uuid.UUID) -> Iterator[ReportRow]:
    after = 0
    while True:
        chunk = list_items(session, batch_id, after_seq=after, limit=CHUNK)
        pages = _page_counts(session, [document.id for _, document in chunk if document is not None])
        for item, document in chunk:
            yield _row(item, document, pages.get(document.id) if document is not None else None)
        if len(chunk) < CHUNK:
            return
        after = chunk[-1][0].seq
        session.expunge_all()


def summary(batch: Batch, status: BatchStatus) -> dict[str, Any]:
    outcomes = dict(status.outcomes)
    return {
        "batch_id": str(batch.id),
        "name": batch.name,
        "kind": batch.kind,
        "state": batch.state,
        "round": batch.round,
        "inputs": status.inputs,
        "outcomes": outcomes,
        "accounted": sum(outcomes.values()) == status.inputs,
        "final": outcomes["pending"] == 0 and outcomes["in_progress"] == 0,
        "error_code": batch.error_code,
        "error_message": batch.error_message,
    }


def json_chunks(head: dict[str, Any], rows: Iterator[ReportRow]) -> Iterator[str]:
    """``{"summary": head, "items": [rows…]}``, written row by row."""
    yield '{"summary": ' + json.dumps(head) + ', "items": ['
    first = True
    for row in rows:
        yield ("" if first else ", ") + json.dumps(asdict(row))
        first = False
    yield "]}\n"


def csv_chunks(rows: Iterator[ReportRow]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for count, row in enumerate(rows, start=1):
        values = asdict(row)
        values["previous_documents"] = " ".join(row.previous_documents)
        writer.writerow(["" if values[column] is None else values[column] for column in CSV_COLUMNS])
        if count % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
