"""Dispatch planning: which documents may start and which queued pages go to the broker now.

Postgres decides, the broker only carries signals. Each planning call writes what it sends
(``dispatched_at`` on pages, ``prepare_dispatched_at`` on documents) and registers the messages
in the caller's outbox, so they are published only after the decision commits; a message that
is lost anyway is found by age and sent again.
"""

from __future__ import annotations

from sqlalchemy import func, select

from scriptorium.batching import plan_batches
from scriptorium.db.models import Document
from scriptorium.dedup import finished_originals, promote, waiting_duplicates
from scriptorium.lifecycle.documents import complete_as_duplicate
from scriptorium.quotas import pause_exhausted, resume_ready
from scriptorium.scheduling import DuePage, dispatch_due_pages
from scriptorium.states import DocumentState, Lane
from scriptorium.unit_of_work import UnitOfWork


def send_prepare(uow: UnitOfWork, document: Document) -> None:
    """Register ``prepare`` for a received document and note when it was sent."""
    if document.state != DocumentState.RECEIVED:
        return
    document.prepare_dispatched_at = func.now()
    uow.outbox.prepare(document.id, document.request_id, Lane(document.priority))


def admit_and_dispatch(uow: UnitOfWork, *, depth: int, lost_after_s: int, batch_pages: int = 1) -> None:
    """Admit what may start now and send due pages, at most ``depth`` live messages per lane.

    First settle duplicates whose original ended, pause documents of tenants past a budget and
    resume those a budget or a free concurrency slot admits again; then pick pages in lane
    order and tenant turns (``scriptorium.scheduling``). A queued page whose message is older
    than ``lost_after_s`` counts as lost and is resent; duplicates are harmless because the
    claim only succeeds once.
    """
    _settle_duplicates(uow)
    pause_exhausted(uow.session)
    for resumed in resume_ready(uow.session):
        if resumed.prepare:  # resumed into "preparing", marked as sent (scriptorium.quotas)
            uow.outbox.prepare(resumed.document_id, resumed.request_id, resumed.lane)
    dispatch_pages(uow, depth=depth, lost_after_s=lost_after_s, batch_pages=batch_pages)


def dispatch_pages(uow: UnitOfWork, *, depth: int, lost_after_s: int, batch_pages: int = 1) -> int:
    """Only top the broker up with due pages: the cheap refill after each engine batch.

    Due pages travel as engine batches of up to ``batch_pages`` pages of one model family, mode and
    lane (each batch in its family's GPU queue), grouped by predicted output length
    (:mod:`scriptorium.batching`); a page that was tried before travels alone. The admission work
    of :func:`admit_and_dispatch` (duplicates, budgets, concurrency) runs when a document finishes
    and on every sweep. Returns how many pages were sent.
    """
    due = dispatch_due_pages(uow.session, depth=depth, lost_after_s=lost_after_s)
    if not due:
        return 0
    request_ids = dict(
        uow.session.execute(
            select(Document.id, Document.request_id).where(
                Document.id.in_({page.document_id for page in due})
            )
        ).all()
    )
    for batch in engine_batches(due, batch_pages):
        head = batch[0]
        pages = [(page.document_id, page.page_no) for page in batch]
        uow.outbox.ocr(pages, request_ids.get(head.document_id), head.lane, model=head.model)
    return len(due)


def engine_batches(due: list[DuePage], batch_pages: int) -> list[list[DuePage]]:
    """Group due pages (in dispatch order) into engine batches: same family, lane and mode, similar
    length."""
    groups: dict[tuple[str, Lane, str], list[DuePage]] = {}
    batches: list[list[DuePage]] = []
    for page in due:
        if page.attempts > 0:  # a retried page may be what crashed its last batch: it runs alone
            batches.append([page])
        else:
            groups.setdefault((page.model, page.lane, page.mode), []).append(page)
    for pages in groups.values():
        batches.extend(plan_batches(pages, max(1, batch_pages)))
    return sorted(batches, key=lambda batch: (batch[0].lane.rank, min(page.turn for page in batch)))


def _settle_duplicates(uow: UnitOfWork) -> None:
    """Duplicates waiting for an original that ended: reuse its result, or start the oldest of them."""
    for original in finished_originals(uow.session):
        waiting = waiting_duplicates(uow.session, original.id)
        if not waiting:
            continue
        if original.state == DocumentState.COMPLETED:
            for duplicate in waiting:
                complete_as_duplicate(uow, duplicate, original)
        else:
            root = promote(uow.session, waiting)
            send_prepare(uow, root)
