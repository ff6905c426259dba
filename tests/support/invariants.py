"""The DESIGN.md invariants, asserted in the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, Event, Page, UsageEntry
from scriptorium.states import TERMINAL_DOCUMENT_STATES, TERMINAL_PAGE_STATES

TOKEN_COLUMNS = ("vision_tokens", "valid_tokens", "placeholder_tokens", "prompt_tokens", "output_tokens")


def assert_invariants(sessions: sessionmaker[Session], document_ids: Iterable[uuid.UUID]) -> None:
    with sessions() as session:
        for document_id in document_ids:
            _check_document(session, document_id)


def _check_document(session: Session, document_id: uuid.UUID) -> None:
    document = session.get(Document, document_id)
    assert document is not None, f"document {document_id} vanished"
    pages = list(session.execute(select(Page).where(Page.document_id == document_id)).scalars())
    events = list(session.execute(select(Event).where(Event.document_id == document_id)).scalars())
    terminal_values = {state.value for state in TERMINAL_DOCUMENT_STATES}
    if document.state in terminal_values:
        assert document.finished_at is not None
        assert [event.type for event in events] == [f"document.{document.state}"], (
            f"{document_id}: expected one document.{document.state} event, got {[e.type for e in events]}"
        )
        unfinished = [p.page_no for p in pages if p.state not in {s.value for s in TERMINAL_PAGE_STATES}]
        assert not unfinished, f"{document_id} is {document.state} but pages {unfinished} are not final"
    else:
        assert events == [], f"{document_id} is {document.state} yet has events"
    assert len(pages) == document.pages_total or document.state in ("received", "preparing", "failed")
    for column in TOKEN_COLUMNS:
        page_sum = sum(getattr(page, column) for page in pages)
        assert getattr(document, column) == page_sum, (
            f"{document_id}: {column} {getattr(document, column)} != {page_sum}"
        )
        ledger = session.execute(
            select(func.coalesce(func.sum(getattr(UsageEntry, column)), 0)).where(
                UsageEntry.document_id == document_id
            )
        ).scalar_one()
        assert ledger == page_sum, f"{document_id}: ledger {column} {ledger} != pages {page_sum}"
    for page in pages:
        assert page.attempts <= page.max_attempts, f"page {page.page_no} ran {page.attempts} times"
        if page.state == "done":
            assert page.markdown is not None and page.mode is not None
            assert len(page.ocr_attempts) == page.escalations + 1
        assert page.state != "running" or page.lease_token is not None
