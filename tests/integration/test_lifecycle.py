"""The guarded transitions of pages and documents, against real Postgres.

Each test runs in one transaction rolled back at its end (``db_sessions``), except the race of
concurrent last pages, which needs real concurrent transactions, and the head-of-line batch, which
needs distinct creation times."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, Event, Page, UsageEntry
from scriptorium.dispatch import dispatch_pages
from scriptorium.lifecycle.claims import claim_next_batch, claim_page, claim_pages, extend_leases
from scriptorium.lifecycle.documents import cancel_document, lock_document
from scriptorium.lifecycle.recording import AttemptRecord, PageOutcome, Recorded, record_page_outcome
from scriptorium.lifecycle.sweeping import sweep
from scriptorium.model_families import DEFAULT_MODEL_FAMILY
from scriptorium.states import DocumentState
from tests.support import builders
from tests.support.units import RecordingSink, unit_of_work


def _attempt(mode: str = "base", output: int = 50, escalation: bool = False) -> AttemptRecord:
    return builders.attempt(mode=mode, output=output, escalation=escalation)


def _done(*attempts: AttemptRecord) -> PageOutcome:
    return builders.page_outcome(*(attempts or (_attempt(),)))


def _expire_leases(session: Session, document_id: uuid.UUID) -> None:
    """Let the document's leases run out; inside the test's one transaction now() does not move."""
    session.execute(
        update(Page)
        .where(Page.document_id == document_id, Page.lease_expires_at.is_not(None))
        .values(lease_expires_at=func.now() - timedelta(seconds=1))
    )


@pytest.fixture
def document_id(db_sessions: sessionmaker[Session]) -> uuid.UUID:
    with db_sessions.begin() as session:
        owner = builders.tenant(session).tenant
        return builders.document_with_pages(session, owner, pages=3).id


def test_a_page_is_claimed_once(db_sessions: sessionmaker[Session], document_id: uuid.UUID) -> None:
    with db_sessions.begin() as session:
        first = claim_page(session, document_id, 1, owner="w1", lease_s=60)
    with db_sessions.begin() as session:
        second = claim_page(session, document_id, 1, owner="w2", lease_s=60)
    assert first is not None and first.attempt == 1
    assert second is None


def test_an_expired_lease_can_be_taken_over_and_the_stale_write_is_refused(
    db_sessions: sessionmaker[Session], document_id: uuid.UUID
) -> None:
    with db_sessions.begin() as session:
        stale = claim_page(session, document_id, 1, owner="w1", lease_s=60)
        _expire_leases(session, document_id)
    with db_sessions.begin() as session:
        fresh = claim_page(session, document_id, 1, owner="w2", lease_s=60)
    assert stale is not None and fresh is not None and fresh.attempt == 2
    with unit_of_work(db_sessions) as uow:
        assert not record_page_outcome(uow, stale, _done()).written
        assert extend_leases(uow.session, [stale], lease_s=60) == {(document_id, 1)}
    with unit_of_work(db_sessions) as uow:
        assert record_page_outcome(uow, fresh, _done()) == Recorded(written=True)
    with db_sessions() as session:
        page = session.get(Page, (document_id, 1))
        assert page is not None and page.state == "done" and page.lease_token is None


def test_the_last_page_finishes_the_document_exactly_once_with_totals(
    db_sessions: sessionmaker[Session], document_id: uuid.UUID
) -> None:
    events = []
    for page_no in (1, 2, 3):
        with unit_of_work(db_sessions) as uow:
            claim = claim_page(uow.session, document_id, page_no, owner="w", lease_s=60)
            assert claim is not None
            events.append(record_page_outcome(uow, claim, _done(_attempt(output=10 * page_no))).event)
    assert events[:2] == [None, None]
    assert isinstance(events[2], Event) and events[2].type == "document.completed"
    with db_sessions() as session:
        document = session.get(Document, document_id)
        assert document is not None and document.state == "completed" and document.finished_at is not None
        assert document.output_tokens == 60
        page_sum = session.execute(
            select(func.sum(Page.output_tokens)).where(Page.document_id == document_id)
        ).scalar_one()
        ledger_sum = session.execute(
            select(func.sum(UsageEntry.output_tokens)).where(UsageEntry.document_id == document_id)
        ).scalar_one()
        assert page_sum == ledger_sum == 60
        assert (
            session.execute(
                select(func.count()).select_from(Event).where(Event.document_id == document_id)
            ).scalar_one()
            == 1
        )


def test_concurrent_last_pages_emit_one_event(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        owner = builders.tenant(session).tenant
        document_id = builders.document_with_pages(session, owner, pages=8).id
    claims = []
    with sessions.begin() as session:
        for page_no in range(1, 9):
            claim = claim_page(session, document_id, page_no, owner="w", lease_s=60)
            assert claim is not None
            claims.append(claim)
    results: list[object] = []
    barrier = threading.Barrier(len(claims))

    def finish(claim: object) -> None:
        barrier.wait()
        with unit_of_work(sessions) as uow:
            results.append(record_page_outcome(uow, claim, _done()).event)  # type: ignore[arg-type]

    threads = [threading.Thread(target=finish, args=(claim,)) for claim in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(result, Event) for result in results) == 1
    with sessions() as session:
        assert session.get(Document, document_id).state == "completed"  # type: ignore[union-attr]


def test_escalation_attempts_are_each_accounted(
    db_sessions: sessionmaker[Session], document_id: uuid.UUID
) -> None:
    with unit_of_work(db_sessions) as uow:
        claim = claim_page(uow.session, document_id, 1, owner="w", lease_s=60)
        assert claim is not None
        record_page_outcome(uow, claim, _done(_attempt("tiny", 300), _attempt("small", 200, escalation=True)))
    with db_sessions() as session:
        page = session.get(Page, (document_id, 1))
        assert page is not None
        assert page.escalations == 1 and page.output_tokens == 500 and len(page.ocr_attempts) == 2
        assert (
            session.execute(
                select(func.count()).select_from(UsageEntry).where(UsageEntry.document_id == document_id)
            ).scalar_one()
            == 2
        )


# Commits (`sessions`): the order of creation times matters, and inside one rolled-back
# transaction now() gives every row the same time.
def test_a_prefetched_batch_is_one_mode_under_one_lease(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.execute(update(Page).where(Page.state == "queued").values(state="cancelled"))
        owner = builders.tenant(session).tenant
        tiny_doc = builders.document_with_pages(session, owner, pages=4, mode="tinyx").id
    with sessions.begin() as session:  # a later transaction: the small document is the younger one
        builders.document_with_pages(session, owner, pages=4, mode="smallx")
    with sessions.begin() as session:
        batch = claim_next_batch(
            session, model=DEFAULT_MODEL_FAMILY, batch_size=3, window_batches=4, owner="w", lease_s=60
        )
    assert len(batch) == 3
    assert {c.document_id for c in batch} == {tiny_doc}  # the head of the line decides the mode
    assert len({c.lease_token for c in batch}) == 1


def test_a_listed_batch_claims_only_what_is_still_claimable(
    db_sessions: sessionmaker[Session], document_id: uuid.UUID
) -> None:
    with db_sessions.begin() as session:
        assert claim_page(session, document_id, 2, owner="other", lease_s=60) is not None
    with db_sessions.begin() as session:
        batch = claim_pages(
            session,
            [(document_id, 3), (document_id, 2), (document_id, 1)],
            model=DEFAULT_MODEL_FAMILY,
            owner="w",
            lease_s=60,
        )
    assert [c.page_no for c in batch] == [3, 1]  # in the listed order, page 2 is someone else's
    with db_sessions.begin() as session:
        duplicate = claim_pages(
            session, [(document_id, 1)], model=DEFAULT_MODEL_FAMILY, owner="w", lease_s=60
        )
        assert duplicate == []  # a duplicate message


def test_cancel_stops_queued_pages_and_fences_running_ones(
    db_sessions: sessionmaker[Session], document_id: uuid.UUID
) -> None:
    with db_sessions.begin() as session:
        running = claim_page(session, document_id, 1, owner="w", lease_s=60)
    with unit_of_work(db_sessions) as uow:
        document = lock_document(uow.session, document_id)
        assert document is not None
        event = cancel_document(uow, document)
        assert event is not None and event.type == "document.cancelled"
    with unit_of_work(db_sessions) as uow:
        assert claim_page(uow.session, document_id, 2, owner="w", lease_s=60) is None
        assert running is not None and not record_page_outcome(uow, running, _done()).written
    with db_sessions() as session:
        states = session.execute(select(Page.state).where(Page.document_id == document_id)).scalars().all()
        assert set(states) == {"cancelled"}


def test_sweeper_requeues_expired_leases_and_kills_exhausted_pages(
    db_sessions: sessionmaker[Session],
) -> None:
    with db_sessions.begin() as session:
        owner = builders.tenant(session).tenant
        document_id = builders.document_with_pages(session, owner, pages=2, max_attempts=1).id
    with db_sessions.begin() as session:
        claim_page(session, document_id, 1, owner="w", lease_s=60)
        session.execute(
            update(Page).where(Page.document_id == document_id, Page.page_no == 2).values(max_attempts=2)
        )
        claim_page(session, document_id, 2, owner="w", lease_s=60)
        _expire_leases(session, document_id)
    with unit_of_work(db_sessions) as uow:
        report = sweep(uow, lost_after_s=300, prepare_attempts=3)
    assert report.dead >= 1 and report.requeued >= 1
    with db_sessions() as session:
        page1 = session.get(Page, (document_id, 1))
        page2 = session.get(Page, (document_id, 2))
        assert page1 is not None and page1.state == "dead" and page1.error_code == "attempts_exhausted"
        assert page2 is not None and page2.state == "queued" and page2.dispatched_at is None


def test_dispatch_keeps_the_broker_shallow(db_sessions: sessionmaker[Session]) -> None:
    with db_sessions.begin() as session:
        session.execute(update(Page).where(Page.state == "queued").values(state="cancelled"))
        owner = builders.tenant(session).tenant
        builders.document_with_pages(session, owner, pages=10, dispatched=False)
    first, second = RecordingSink(), RecordingSink()
    with unit_of_work(db_sessions, first) as uow:
        dispatch_pages(uow, depth=4, lost_after_s=300)
    with unit_of_work(db_sessions, second) as uow:
        dispatch_pages(uow, depth=4, lost_after_s=300)
    assert len(first.pages) == 4
    assert second.pages == []


def test_the_usage_ledger_is_append_only(db_sessions: sessionmaker[Session], document_id: uuid.UUID) -> None:
    with unit_of_work(db_sessions) as uow:
        claim = claim_page(uow.session, document_id, 1, owner="w", lease_s=60)
        assert claim is not None
        record_page_outcome(uow, claim, _done())
    with pytest.raises(DBAPIError, match="append-only"), db_sessions.begin() as session:
        session.execute(text("UPDATE usage_ledger SET output_tokens = 0"))
    with pytest.raises(DBAPIError, match="append-only"), db_sessions.begin() as session:
        session.execute(text("DELETE FROM usage_ledger"))


def test_terminal_states_are_final(db_sessions: sessionmaker[Session], document_id: uuid.UUID) -> None:
    with unit_of_work(db_sessions) as uow:
        document = lock_document(uow.session, document_id)
        assert document is not None
        cancel_document(uow, document)
    with unit_of_work(db_sessions) as uow:
        document = lock_document(uow.session, document_id)
        assert document is not None and document.state == DocumentState.CANCELLED
        assert cancel_document(uow, document) is None


def test_the_model_family_is_recorded_with_the_page_and_every_ledger_row(
    db_sessions: sessionmaker[Session], document_id: uuid.UUID
) -> None:
    with unit_of_work(db_sessions) as uow:
        claim = claim_page(uow.session, document_id, 1, owner="w", lease_s=60)
        assert claim is not None
        outcome = builders.page_outcome(
            _attempt("tiny", 30), _attempt("small", 20, escalation=True), model="unlimited-ocr"
        )
        record_page_outcome(uow, claim, outcome)
    with db_sessions() as session:
        page = session.get(Page, (document_id, 1))
        assert page is not None and page.model == "unlimited-ocr"
        rows = session.execute(
            select(UsageEntry.model).where(UsageEntry.document_id == document_id)
        ).scalars()
        assert list(rows) == ["unlimited-ocr", "unlimited-ocr"]
        unread = session.get(Page, (document_id, 2))
        assert unread is not None and unread.model is None
    with pytest.raises(DBAPIError), db_sessions.begin() as session:  # only the families the fleet knows
        session.execute(update(Page).where(Page.document_id == document_id).values(model="deepseek-ocr-2"))
