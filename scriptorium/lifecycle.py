"""State transitions of documents and pages, as guarded SQL.

Celery delivers at least once, so every transition here is conditional: a claim succeeds only
for a claimable row, a result is written only under the lease that claimed the page, and a
document becomes terminal in exactly one transaction (the one that finds no unfinished page
while holding the document row lock). Lock order is always page rows, then the document row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, cast, func, insert, literal, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from scriptorium.batches.completion import finish_batch_if_done
from scriptorium.db.models import Document, Event, Page, UsageEntry
from scriptorium.dedup import finished_originals, promote, waiting_duplicates
from scriptorium.errors import ReasonCode
from scriptorium.quotas import charge_usage, pause_exhausted, resume_ready
from scriptorium.scheduling import dispatch_due_pages, lock_batch_companions
from scriptorium.states import (
    TERMINAL_DOCUMENT_STATES,
    DocumentState,
    EventType,
    Lane,
    PageState,
    document_outcome,
)
from scriptorium.webhooks.fanout import create_deliveries

ACTIVE_PAGE_STATES = (PageState.QUEUED.value, PageState.RUNNING.value)
TERMINAL_DOCUMENT_VALUES = tuple(s.value for s in TERMINAL_DOCUMENT_STATES)


def _lease_interval(seconds: int) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


@dataclass(frozen=True)
class PageClaim:
    document_id: uuid.UUID
    page_no: int
    lease_token: uuid.UUID
    attempt: int
    tenant_id: uuid.UUID
    image_key: str
    width: int
    height: int
    planned_mode: str
    task: str
    routing: dict[str, Any]
    routing_policy: dict[str, Any]
    request_id: str | None


@dataclass(frozen=True)
class AttemptRecord:
    """One engine run of a page, as accounted in the ledger."""

    mode: str
    vision_tokens: int
    valid_tokens: int
    placeholder_tokens: int
    prompt_tokens: int
    output_tokens: int
    engine_seconds: float
    finished: bool
    repetition: bool
    escalation: bool
    grid: list[int] | None = None
    verdict: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "grid": self.grid,
            "tokens": {
                "vision": self.vision_tokens,
                "valid": self.valid_tokens,
                "placeholders": self.placeholder_tokens,
                "prompt": self.prompt_tokens,
                "output": self.output_tokens,
            },
            "engine_seconds": round(self.engine_seconds, 4),
            "finished": self.finished,
            "repetition": self.repetition,
            "escalation": self.escalation,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class PageOutcome:
    """What an OCR task records for a page: the kept result plus every attempt it cost."""

    state: PageState  # DONE or FAILED
    attempts: Sequence[AttemptRecord]
    model_revision: str
    mode: str | None = None
    grid: list[int] | None = None
    markdown: str | None = None
    blocks: list[Any] | None = None
    figures: list[Any] | None = None
    finished: bool | None = None
    under_read: bool = False
    compression_ratio: float | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass
class DispatchPlan:
    """Messages to publish after the transaction that planned them has committed."""

    pages: list[tuple[uuid.UUID, int, str | None]] = field(default_factory=list)
    documents: list[tuple[uuid.UUID, str | None]] = field(default_factory=list)
    lanes: dict[uuid.UUID, Lane] = field(default_factory=dict)  # a document's lane; interactive if absent

    def __bool__(self) -> bool:
        return bool(self.pages or self.documents)

    def add_document(self, document_id: uuid.UUID, request_id: str | None, lane: Lane) -> None:
        self.documents.append((document_id, request_id))
        self.lanes[document_id] = lane

    def merge(self, other: DispatchPlan) -> None:
        self.pages.extend(other.pages)
        self.documents.extend(other.documents)
        self.lanes.update(other.lanes)

    def lane_of(self, document_id: uuid.UUID) -> Lane:
        return self.lanes.get(document_id, Lane.INTERACTIVE)


# --- pages -------------------------------------------------------------------------------------


def _claim_returning(session: Session, statement: Any) -> list[PageClaim]:
    rows = session.execute(
        statement.returning(
            Page.document_id,
            Page.page_no,
            Page.lease_token,
            Page.attempts,
            Page.image_key,
            Page.width,
            Page.height,
            Page.planned_mode,
            Page.routing,
        )
    ).all()
    if not rows:
        return []
    documents = {
        doc.id: doc
        for doc in session.execute(
            select(Document).where(Document.id.in_({row.document_id for row in rows}))
        ).scalars()
    }
    return [
        PageClaim(
            document_id=row.document_id,
            page_no=row.page_no,
            lease_token=row.lease_token,
            attempt=row.attempts,
            tenant_id=documents[row.document_id].tenant_id,
            image_key=row.image_key,
            width=row.width,
            height=row.height,
            planned_mode=row.planned_mode,
            task=documents[row.document_id].task,
            routing=row.routing,
            routing_policy=documents[row.document_id].routing_policy,
            request_id=documents[row.document_id].request_id,
        )
        for row in rows
    ]


def _held_under(claim: PageClaim) -> tuple[Any, ...]:
    """The fence on every write to a claimed page: still running under this claim's lease."""
    return (
        Page.document_id == claim.document_id,
        Page.page_no == claim.page_no,
        Page.lease_token == claim.lease_token,
        Page.state == PageState.RUNNING.value,
    )


def _document_paused() -> Any:
    """A paused document's pages wait: messages already in the broker find nothing to claim."""
    return (
        select(Document.id)
        .where(Document.id == Page.document_id, Document.state == DocumentState.PAUSED.value)
        .exists()
    )


def claim_page(
    session: Session, document_id: uuid.UUID, page_no: int, *, owner: str, lease_s: int
) -> PageClaim | None:
    """Take the page under a fresh lease, or None for a duplicate, stale or exhausted message."""
    statement = (
        update(Page)
        .where(
            Page.document_id == document_id,
            Page.page_no == page_no,
            Page.attempts < Page.max_attempts,
            or_(
                Page.state == PageState.QUEUED.value,
                and_(Page.state == PageState.RUNNING.value, Page.lease_expires_at < func.now()),
            ),
            ~_document_paused(),
        )
        .values(
            state=PageState.RUNNING.value,
            attempts=Page.attempts + 1,
            lease_token=uuid.uuid4(),
            lease_owner=owner,
            lease_expires_at=func.now() + _lease_interval(lease_s),
            updated_at=func.now(),
        )
    )
    claims = _claim_returning(session, statement)
    return claims[0] if claims else None


def claim_batch_companions(
    session: Session, *, mode: str, limit: int, owner: str, lease_s: int
) -> list[PageClaim]:
    """Claim up to ``limit`` more dispatched, never-attempted pages routed to ``mode``.

    Interactive pages first, tenants in turn (see ``scheduling.lock_batch_companions``).
    """
    locked = lock_batch_companions(session, mode=mode, limit=limit)
    if not locked:
        return []
    statement = (
        update(Page)
        .where(tuple_(Page.document_id, Page.page_no).in_(locked))
        .values(
            state=PageState.RUNNING.value,
            attempts=Page.attempts + 1,
            lease_token=func.gen_random_uuid(),
            lease_owner=owner,
            lease_expires_at=func.now() + _lease_interval(lease_s),
            updated_at=func.now(),
        )
    )
    return _claim_returning(session, statement)


def extend_leases(
    session: Session, claims: Sequence[PageClaim], *, lease_s: int
) -> set[tuple[uuid.UUID, int]]:
    """Heartbeat: push lease expiry forward; returns the pages whose lease was lost."""
    lost: set[tuple[uuid.UUID, int]] = set()
    for claim in claims:
        result = session.execute(
            update(Page)
            .where(*_held_under(claim))
            .values(lease_expires_at=func.now() + _lease_interval(lease_s))
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            lost.add((claim.document_id, claim.page_no))
    return lost


def release_claim(session: Session, claim: PageClaim) -> bool:
    """Give a claimed page back to the queue (e.g. on a soft time limit) for a prompt retry."""
    result = session.execute(
        update(Page)
        .where(*_held_under(claim))
        .values(
            state=PageState.QUEUED.value,
            lease_token=None,
            lease_expires_at=None,
            dispatched_at=None,
            updated_at=func.now(),
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Recorded:
    """Whether a page result was written, and the document's terminal event if it was the last."""

    written: bool
    event: Event | None = None


def record_page_outcome(session: Session, claim: PageClaim, outcome: PageOutcome) -> Recorded:
    """Write one page's result under its lease; see :func:`record_page_outcomes`."""
    return record_page_outcomes(session, [(claim, outcome)])[0]


def record_page_outcomes(
    session: Session, results: Sequence[tuple[PageClaim, PageOutcome]]
) -> list[Recorded]:
    """Write page results under their leases, account their tokens, and finish documents that are due.

    One transaction for a whole engine batch. A page whose lease was lost is not written (another
    worker owns it now); the others are. Rows are locked in the fleet's one order: pages, then
    the tenant's usage, then documents by id.
    """
    order = sorted(range(len(results)), key=lambda i: (results[i][0].document_id, results[i][0].page_no))
    written: dict[int, dict[str, Any]] = {}
    for index in order:
        claim, outcome = results[index]
        totals = _write_page(session, claim, outcome)
        if totals is not None:
            written[index] = totals
    charges: dict[uuid.UUID, list[int]] = {}
    for index, totals in written.items():
        claim, outcome = results[index]
        if outcome.attempts:
            charge = charges.setdefault(claim.tenant_id, [0, 0])
            charge[0] += 1
            charge[1] += totals["vision_tokens"] + totals["output_tokens"]
    for tenant_id in sorted(charges):
        pages, tokens = charges[tenant_id]
        charge_usage(session, tenant_id, pages=pages, tokens=tokens)
    by_document: dict[uuid.UUID, list[int]] = {}
    for index in written:
        by_document.setdefault(results[index][0].document_id, []).append(index)
    events: dict[uuid.UUID, Event | None] = {}
    for document_id in sorted(by_document):
        document = session.execute(
            select(Document).where(Document.id == document_id).with_for_update()
        ).scalar_one()
        for index in by_document[document_id]:
            totals = written[index]
            document.vision_tokens += totals["vision_tokens"]
            document.valid_tokens += totals["valid_tokens"]
            document.placeholder_tokens += totals["placeholder_tokens"]
            document.prompt_tokens += totals["prompt_tokens"]
            document.output_tokens += totals["output_tokens"]
            document.escalations += totals["escalations"]
            document.ocr_attempts += len(results[index][1].attempts)
            document.engine_seconds += totals["engine_seconds"]
        document.updated_at = func.now()
        events[document_id] = finish_document_if_done(session, document)
    event_at = {indices[-1]: events[document_id] for document_id, indices in by_document.items()}
    return [Recorded(written=index in written, event=event_at.get(index)) for index in range(len(results))]


def _write_page(session: Session, claim: PageClaim, outcome: PageOutcome) -> dict[str, Any] | None:
    """The fenced page update and its ledger rows; None when the lease was lost."""
    totals = _sum_attempts(outcome.attempts)
    written = session.execute(
        update(Page)
        .where(*_held_under(claim))
        .values(
            state=outcome.state.value,
            lease_token=None,
            lease_expires_at=None,
            mode=outcome.mode,
            grid=outcome.grid,
            markdown=outcome.markdown,
            blocks=outcome.blocks,
            figures=outcome.figures,
            finished=outcome.finished,
            under_read=outcome.under_read,
            compression_ratio=outcome.compression_ratio,
            model_revision=outcome.model_revision,
            error_code=outcome.error_code,
            error_message=outcome.error_message,
            ocr_attempts=Page.ocr_attempts.op("||")(cast(literal(_json_list(outcome.attempts)), JSONB)),
            vision_tokens=Page.vision_tokens + totals["vision_tokens"],
            valid_tokens=Page.valid_tokens + totals["valid_tokens"],
            placeholder_tokens=Page.placeholder_tokens + totals["placeholder_tokens"],
            prompt_tokens=Page.prompt_tokens + totals["prompt_tokens"],
            output_tokens=Page.output_tokens + totals["output_tokens"],
            escalations=Page.escalations + totals["escalations"],
            engine_seconds=Page.engine_seconds + totals["engine_seconds"],
            finished_at=func.now(),
            updated_at=func.now(),
        )
    )
    if written.rowcount == 0:  # type: ignore[attr-defined]
        return None
    if outcome.attempts:
        session.execute(
            insert(UsageEntry),
            [
                {
                    "tenant_id": claim.tenant_id,
                    "document_id": claim.document_id,
                    "page_no": claim.page_no,
                    "attempt": claim.attempt,
                    "mode": attempt.mode,
                    "vision_tokens": attempt.vision_tokens,
                    "valid_tokens": attempt.valid_tokens,
                    "placeholder_tokens": attempt.placeholder_tokens,
                    "prompt_tokens": attempt.prompt_tokens,
                    "output_tokens": attempt.output_tokens,
                    "engine_seconds": attempt.engine_seconds,
                    "escalation": attempt.escalation,
                    "model_revision": outcome.model_revision,
                }
                for attempt in outcome.attempts
            ],
        )
    return totals


def _json_list(attempts: Sequence[AttemptRecord]) -> str:
    return json.dumps([attempt.as_dict() for attempt in attempts])


def _sum_attempts(attempts: Sequence[AttemptRecord]) -> dict[str, Any]:
    return {
        "vision_tokens": sum(a.vision_tokens for a in attempts),
        "valid_tokens": sum(a.valid_tokens for a in attempts),
        "placeholder_tokens": sum(a.placeholder_tokens for a in attempts),
        "prompt_tokens": sum(a.prompt_tokens for a in attempts),
        "output_tokens": sum(a.output_tokens for a in attempts),
        "escalations": sum(a.escalation for a in attempts),
        "engine_seconds": sum(a.engine_seconds for a in attempts),
    }


# --- documents ---------------------------------------------------------------------------------


def page_state_counts(session: Session, document_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(
        select(Page.state, func.count()).where(Page.document_id == document_id).group_by(Page.state)
    ).all()
    return {state: count for state, count in rows}


def event_payload(document: Document, counts: dict[str, int]) -> dict[str, Any]:
    """The thin payload clients receive: ids, state, counts and token totals, never text."""
    return {
        "document_id": str(document.id),
        "tenant_id": str(document.tenant_id),
        "state": document.state,
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


def _enter_terminal(session: Session, document: Document, state: DocumentState) -> Event:
    document.state = state.value
    document.finished_at = func.now()
    document.updated_at = func.now()
    session.flush()
    session.refresh(document)
    event = Event(
        tenant_id=document.tenant_id,
        document_id=document.id,
        type=EventType.for_document(state).value,
        payload=event_payload(document, page_state_counts(session, document.id)),
    )
    session.add(event)
    session.flush()
    create_deliveries(session, event, document)  # webhooks: same transaction, so no event is lost
    if document.batch_id is not None:
        finish_batch_if_done(session, document.batch_id)  # lock order: pages, document, then batch
    return event


def finish_document_if_done(session: Session, document: Document) -> Event | None:
    """Flip a processing document to its outcome when no page is left; caller holds its row lock.

    A document paused by a budget while its last queued page was being claimed ends here too.
    """
    paused_with_pages = document.state == DocumentState.PAUSED.value and document.pages_total > 0
    if document.state != DocumentState.PROCESSING.value and not paused_with_pages:
        return None
    counts = page_state_counts(session, document.id)
    if any(counts.get(state, 0) for state in ACTIVE_PAGE_STATES):
        return None
    if paused_with_pages:
        document.error_code = document.error_message = None
    states = [PageState(state) for state, count in counts.items() for _ in range(count)]
    outcome = document_outcome(states)
    if outcome is DocumentState.FAILED and not document.error_code:
        document.error_code = ReasonCode.ENGINE_ERROR.value
        document.error_message = "no page of the document could be read"
    return _enter_terminal(session, document, outcome)


def lock_document(session: Session, document_id: uuid.UUID) -> Document | None:
    return session.execute(
        select(Document).where(Document.id == document_id).with_for_update()
    ).scalar_one_or_none()


def fail_document(session: Session, document_id: uuid.UUID, reason: ReasonCode, message: str) -> Event | None:
    """Fail a document that has not started OCR (bad input, exhausted preparation)."""
    document = lock_document(session, document_id)
    if document is None or document.state not in (
        DocumentState.RECEIVED.value,
        DocumentState.PREPARING.value,
    ):
        return None
    document.error_code = reason.value
    document.error_message = message
    document.pdf_password = None
    return _enter_terminal(session, document, DocumentState.FAILED)


def cancel_document(session: Session, document: Document) -> Event | None:
    """Cancel a document (row already locked): unfinished pages never reach an engine."""
    if document.state in TERMINAL_DOCUMENT_VALUES:
        return None
    session.execute(
        update(Page)
        .where(Page.document_id == document.id, Page.state.in_(ACTIVE_PAGE_STATES))
        .values(
            state=PageState.CANCELLED.value,
            lease_token=None,
            lease_expires_at=None,
            error_code=ReasonCode.CANCELLED.value,
            error_message="the document was cancelled",
            finished_at=func.now(),
            updated_at=func.now(),
        )
    )
    document.error_code = ReasonCode.CANCELLED.value
    document.error_message = "cancelled by the client"
    document.pdf_password = None
    return _enter_terminal(session, document, DocumentState.CANCELLED)


def claim_document_for_prepare(
    session: Session, document_id: uuid.UUID, *, lease_s: int, max_attempts: int
) -> Document | None:
    """Take a received document (or one whose preparation lease expired) for preparation."""
    row = session.execute(
        update(Document)
        .where(
            Document.id == document_id,
            Document.prepare_attempts < max_attempts,
            Document.duplicate_of.is_(None),
            or_(
                Document.state == DocumentState.RECEIVED.value,
                and_(
                    Document.state == DocumentState.PREPARING.value,
                    Document.prepare_lease_expires_at < func.now(),
                ),
            ),
        )
        .values(
            state=DocumentState.PREPARING.value,
            prepare_attempts=Document.prepare_attempts + 1,
            prepare_lease_expires_at=func.now() + _lease_interval(lease_s),
            started_at=func.coalesce(Document.started_at, func.now()),
            updated_at=func.now(),
        )
        .returning(Document.id)
    ).first()
    if row is None:
        return None
    return session.get(Document, document_id, populate_existing=True)


# --- dispatch and repair -----------------------------------------------------------------------


def plan_dispatch(session: Session, *, depth: int, lost_after_s: int) -> DispatchPlan:
    """Admit what may start now and choose pages to (re)send, at most ``depth`` live messages per lane.

    First settle duplicates whose original ended, pause documents of tenants past a budget and
    resume those a budget or a free concurrency slot admits again; then pick pages in lane
    order and tenant turns (``scriptorium.scheduling``). A queued page whose message is older
    than ``lost_after_s`` counts as lost and is resent; duplicates are harmless because the
    claim only succeeds once.
    """
    plan = DispatchPlan()
    _settle_duplicates(session, plan)
    pause_exhausted(session)
    for resumed in resume_ready(session):
        if resumed.prepare:
            plan.add_document(resumed.document_id, resumed.request_id, resumed.lane)
    _add_due_pages(session, plan, depth=depth, lost_after_s=lost_after_s)
    return plan


def plan_page_dispatch(session: Session, *, depth: int, lost_after_s: int) -> DispatchPlan:
    """Only top the broker up with due pages: the cheap refill after each engine batch.

    The admission work of :func:`plan_dispatch` (duplicates, budgets, concurrency) runs when a
    document finishes and on every sweep.
    """
    plan = DispatchPlan()
    _add_due_pages(session, plan, depth=depth, lost_after_s=lost_after_s)
    return plan


def _add_due_pages(session: Session, plan: DispatchPlan, *, depth: int, lost_after_s: int) -> None:
    due = dispatch_due_pages(session, depth=depth, lost_after_s=lost_after_s)
    request_ids = dict(
        session.execute(
            select(Document.id, Document.request_id).where(
                Document.id.in_({page.document_id for page in due})
            )
        ).all()
    )
    for page in due:
        plan.pages.append((page.document_id, page.page_no, request_ids.get(page.document_id)))
        plan.lanes[page.document_id] = page.lane


def _settle_duplicates(session: Session, plan: DispatchPlan) -> None:
    """Duplicates waiting for an original that ended: reuse its result, or start the oldest of them."""
    for original in finished_originals(session):
        waiting = waiting_duplicates(session, original.id)
        if not waiting:
            continue
        if original.state == DocumentState.COMPLETED.value:
            for duplicate in waiting:
                complete_as_duplicate(session, duplicate, original)
        else:
            root = promote(session, waiting)
            plan.add_document(root.id, root.request_id, Lane(root.priority))


def admit_duplicate(session: Session, document: Document, original: Document) -> Event | None:
    """A new document (flushed, ``received``) matching ``original`` (see ``scriptorium.dedup``).

    A completed original's result is reused at once; otherwise the document waits in
    ``received`` without preparation until the original ends.
    """
    if original.state == DocumentState.COMPLETED.value:
        return complete_as_duplicate(session, document, original)
    document.duplicate_of = original.id
    return None


def complete_as_duplicate(session: Session, document: Document, original: Document) -> Event:
    """Complete ``document`` with ``original``'s result: no pages of its own, no engine work, zero tokens."""
    document.duplicate_of = original.id
    document.kind = original.kind
    document.page_count = original.page_count
    document.pdf_password = None
    document.started_at = func.now()
    return _enter_terminal(session, document, DocumentState.COMPLETED)


@dataclass
class SweepReport:
    requeued: int = 0
    dead: int = 0
    documents_finished: list[Event] = field(default_factory=list)
    documents_failed: int = 0
    prepare_resent: int = 0


def sweep(session: Session, *, lost_after_s: int, prepare_attempts: int) -> tuple[SweepReport, DispatchPlan]:
    """Repair what crashes and lost messages leave behind; run under a single-sweeper lock."""
    report = SweepReport()
    plan = DispatchPlan()
    touched: set[uuid.UUID] = set()

    exhausted = session.execute(
        update(Page)
        .where(
            Page.attempts >= Page.max_attempts,
            or_(
                Page.state == PageState.QUEUED.value,
                and_(Page.state == PageState.RUNNING.value, Page.lease_expires_at < func.now()),
            ),
        )
        .values(
            state=PageState.DEAD.value,
            lease_token=None,
            lease_expires_at=None,
            error_code=ReasonCode.ATTEMPTS_EXHAUSTED.value,
            error_message="the page was attempted the maximum number of times without finishing",
            finished_at=func.now(),
            updated_at=func.now(),
        )
        .returning(Page.document_id)
    ).all()
    report.dead = len(exhausted)
    touched.update(row.document_id for row in exhausted)

    expired = session.execute(
        update(Page)
        .where(Page.state == PageState.RUNNING.value, Page.lease_expires_at < func.now())
        .values(
            state=PageState.QUEUED.value,
            lease_token=None,
            lease_expires_at=None,
            dispatched_at=None,
            updated_at=func.now(),
        )
        .returning(Page.document_id)
    ).all()
    report.requeued = len(expired)

    for document_id in sorted(touched):
        document = lock_document(session, document_id)
        if document is not None:
            event = finish_document_if_done(session, document)
            if event is not None:
                report.documents_finished.append(event)

    stale_prepare = session.execute(
        select(Document.id, Document.prepare_attempts, Document.request_id, Document.priority)
        .where(
            or_(
                and_(
                    Document.state == DocumentState.RECEIVED.value,
                    Document.duplicate_of.is_(None),  # waits for its original, see scriptorium.dedup
                    func.coalesce(Document.prepare_dispatched_at, Document.created_at)
                    < func.now() - _lease_interval(lost_after_s),
                ),
                and_(
                    Document.state == DocumentState.PREPARING.value,
                    Document.prepare_lease_expires_at < func.now(),
                ),
            )
        )
        .with_for_update(skip_locked=True)
    ).all()
    for row in stale_prepare:
        if row.prepare_attempts >= prepare_attempts:
            event = fail_document(
                session,
                row.id,
                ReasonCode.ATTEMPTS_EXHAUSTED,
                "preparing the document failed repeatedly (worker crash or timeout)",
            )
            if event is not None:
                report.documents_failed += 1
                report.documents_finished.append(event)
            continue
        session.execute(
            update(Document).where(Document.id == row.id).values(prepare_dispatched_at=func.now())
        )
        plan.add_document(row.id, row.request_id, Lane(row.priority))
    report.prepare_resent = len(plan.documents)
    return report, plan


def try_sweeper_lock(session: Session) -> bool:
    """Transaction-scoped advisory lock so only one sweeper repairs at a time."""
    return bool(session.execute(text("SELECT pg_try_advisory_xact_lock(727274)")).scalar_one())


def now(session: Session) -> datetime:
    value: datetime = session.execute(select(func.now())).scalar_one()
    return value
