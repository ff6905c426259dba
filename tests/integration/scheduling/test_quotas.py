"""Page and token budgets, concurrent documents: pause with a reason, resume when allowed."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, Tenant
from scriptorium.lifecycle.claims import claim_document_for_prepare
from scriptorium.quotas import hold_for_concurrency, quota_of, set_limits
from scriptorium.states import DocumentState, Lane
from tests.integration.scheduling.conftest import (
    assert_usage_matches_ledger,
    backlog,
    dispatch,
    document,
    new_tenant,
    page_states,
    read_page,
)
from tests.support import builders
from tests.support.builders import attempt
from tests.support.invariants import assert_invariants
from tests.support.units import cancel

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("quiet_queue")]


def _raise_limits(sessions: sessionmaker[Session], tenant_id: uuid.UUID, **limits: int | None) -> None:
    with sessions.begin() as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        set_limits(session, tenant, **limits)


def _read_dispatched(sessions: sessionmaker[Session], *, depth: int = 16) -> list[tuple[uuid.UUID, int]]:
    plan = dispatch(sessions, depth=depth)
    for document_id, page_no, _ in plan.pages:
        assert read_page(sessions, document_id, page_no)
    return [(document_id, page_no) for document_id, page_no, _ in plan.pages]


def test_a_page_budget_caps_dispatch_pauses_the_rest_and_resumes_when_raised(
    db_sessions: sessionmaker[Session],
) -> None:
    owner = new_tenant(db_sessions, page_budget=3)
    document_id = backlog(db_sessions, owner, pages=5)

    assert len(_read_dispatched(db_sessions)) == 3  # the budget, not the depth, bounds dispatch
    dispatch(db_sessions, depth=16)
    paused = document(db_sessions, document_id)
    assert paused.state == DocumentState.PAUSED
    assert paused.error_code == "page_budget_exhausted" and "raised" in (paused.error_message or "")
    assert not read_page(db_sessions, document_id, 4)  # its pages wait, even with a message in hand
    assert list(page_states(db_sessions, document_id).values()).count("queued") == 2

    _raise_limits(db_sessions, owner.id, page_budget=10)
    assert sorted(_read_dispatched(db_sessions)) == [(document_id, 4), (document_id, 5)]

    finished = document(db_sessions, document_id)
    assert finished.state == DocumentState.COMPLETED and finished.error_code is None
    with db_sessions() as session:
        assert quota_of(session, owner.id).pages_used == 5
    assert_usage_matches_ledger(db_sessions, owner.id)
    assert_invariants(db_sessions, [document_id])


def test_a_spent_token_budget_stops_dispatch_until_it_is_raised(db_sessions: sessionmaker[Session]) -> None:
    owner = new_tenant(db_sessions, token_budget=500)  # each page costs 256 vision + 40 output tokens
    document_id = backlog(db_sessions, owner, pages=4)
    dispatched = dispatch(db_sessions, depth=16).pages
    assert len(dispatched) == 4  # tokens cannot be known in advance: the spent total decides
    for page_no in (1, 2):
        assert read_page(db_sessions, document_id, page_no)

    assert dispatch(db_sessions, depth=16).pages == []
    paused = document(db_sessions, document_id)
    assert paused.state == DocumentState.PAUSED and paused.error_code == "token_budget_exhausted"
    assert not read_page(db_sessions, document_id, 3)

    _raise_limits(db_sessions, owner.id, token_budget=None)
    assert sorted(_read_dispatched(db_sessions)) == [(document_id, 3), (document_id, 4)]
    assert document(db_sessions, document_id).state == DocumentState.COMPLETED
    with db_sessions() as session:
        assert quota_of(session, owner.id).tokens_used == 4 * 296
    assert_usage_matches_ledger(db_sessions, owner.id)
    assert_invariants(db_sessions, [document_id])


def test_escalations_are_charged_as_one_page_and_every_run_s_tokens(
    db_sessions: sessionmaker[Session],
) -> None:
    owner = new_tenant(db_sessions)
    document_id = backlog(db_sessions, owner, pages=1, mode="tiny")
    dispatch(db_sessions, depth=4)
    assert read_page(
        db_sessions,
        document_id,
        1,
        attempt(output=900, mode="tiny"),
        attempt(output=700, mode="small", escalation=True),
    )
    with db_sessions() as session:
        used = quota_of(session, owner.id)
    assert (used.pages_used, used.tokens_used) == (1, 64 + 900 + 100 + 700)
    assert_usage_matches_ledger(db_sessions, owner.id)


def test_a_document_paused_by_a_budget_can_be_cancelled(db_sessions: sessionmaker[Session]) -> None:
    owner = new_tenant(db_sessions, page_budget=1)
    document_id = backlog(db_sessions, owner, pages=3)
    _read_dispatched(db_sessions)
    dispatch(db_sessions, depth=16)
    assert document(db_sessions, document_id).state == DocumentState.PAUSED
    cancel(db_sessions, document_id)
    assert document(db_sessions, document_id).state == DocumentState.CANCELLED
    assert sorted(page_states(db_sessions, document_id).values()) == ["cancelled", "cancelled", "done"]
    assert_invariants(db_sessions, [document_id])


def _received(sessions: sessionmaker[Session], owner: Tenant, priority: Lane) -> uuid.UUID:
    with sessions.begin() as session:
        return builders.document_with_pages(
            session, owner, pages=0, state=DocumentState.RECEIVED, priority=priority.value
        ).id


def _hold(sessions: sessionmaker[Session], document_id: uuid.UUID) -> bool:
    with sessions.begin() as session:
        return hold_for_concurrency(session, document_id)


# Commits (`sessions`): the order of creation times matters, and inside one rolled-back
# transaction now() gives every row the same time.
def test_the_concurrency_limit_pauses_before_preparation_and_resumes_interactive_then_oldest(
    sessions: sessionmaker[Session],
) -> None:
    owner = new_tenant(sessions, max_concurrent_documents=1)
    running = backlog(sessions, owner, pages=1)
    older_bulk = _received(sessions, owner, Lane.BULK)
    newer_interactive = _received(sessions, owner, Lane.INTERACTIVE)
    assert _hold(sessions, older_bulk) and _hold(sessions, newer_interactive)
    for waiting in (older_bulk, newer_interactive):
        paused = document(sessions, waiting)
        assert paused.state == DocumentState.PAUSED and paused.error_code == "concurrency_limit"

    plan = dispatch(sessions, depth=4)
    assert plan.documents == []  # no slot yet
    assert read_page(sessions, running, 1)  # the running document completes: one slot frees
    plan = dispatch(sessions, depth=4)

    assert [document_id for document_id, _ in plan.documents] == [newer_interactive]
    assert plan.lane_of(newer_interactive) is Lane.INTERACTIVE
    assert document(sessions, older_bulk).state == DocumentState.PAUSED
    # Admitted: it holds the slot (a second pass admits nothing more) and its prepare message claims it.
    assert document(sessions, newer_interactive).state == DocumentState.PREPARING
    assert dispatch(sessions, depth=4).documents == []
    assert not _hold(sessions, newer_interactive)
    with sessions.begin() as session:
        claimed = claim_document_for_prepare(session, newer_interactive, lease_s=60, max_attempts=3)
        assert claimed is not None and claimed.prepare_attempts == 1


# Commits (`sessions`): the order of creation times matters, and inside one rolled-back
# transaction now() gives every row the same time.
def test_a_new_upload_does_not_overtake_a_document_waiting_for_a_slot(
    sessions: sessionmaker[Session],
) -> None:
    owner = new_tenant(sessions, max_concurrent_documents=1)
    running = backlog(sessions, owner, pages=1)
    waiting = _received(sessions, owner, Lane.INTERACTIVE)
    assert _hold(sessions, waiting)
    assert read_page(sessions, running, 1)
    late = _received(sessions, owner, Lane.INTERACTIVE)

    assert _hold(sessions, late)  # a slot is free, but an older document waits for it
    assert [document_id for document_id, _ in dispatch(sessions, depth=4).documents] == [waiting]


def test_without_limits_nothing_is_held(db_sessions: sessionmaker[Session]) -> None:
    owner = new_tenant(db_sessions)
    backlog(db_sessions, owner, pages=1)
    assert not _hold(db_sessions, _received(db_sessions, owner, Lane.BULK))
    with db_sessions() as session:
        current = quota_of(session, owner.id)
    assert (current.page_budget, current.token_budget, current.max_concurrent_documents) == (None, None, None)


def test_limits_are_validated(db_sessions: sessionmaker[Session]) -> None:
    owner = new_tenant(db_sessions)
    with db_sessions.begin() as session:
        tenant = session.get(Tenant, owner.id)
        assert tenant is not None
        with pytest.raises(ValueError, match="negative"):
            set_limits(session, tenant, page_budget=-1)
        with pytest.raises(ValueError, match="unknown"):
            set_limits(session, tenant, pages=3)


def test_documents_keep_their_lane(db_sessions: sessionmaker[Session]) -> None:
    owner = new_tenant(db_sessions)
    with db_sessions.begin() as session:
        created = Document(
            tenant_id=owner.id,
            size_bytes=1,
            sha256="0" * 64,
            raw_key="unused",
            task="markdown",
            routing_policy={},
            client_metadata={},
        )
        session.add(created)
        session.flush()
        assert created.priority == Lane.INTERACTIVE  # the default lane


def test_a_duplicate_waiting_for_its_original_is_not_held_for_a_slot(
    db_sessions: sessionmaker[Session],
) -> None:
    owner = new_tenant(db_sessions, max_concurrent_documents=1)
    original = backlog(db_sessions, owner, pages=1)
    with db_sessions.begin() as session:
        waiting = builders.document_with_pages(
            session, owner, pages=0, state=DocumentState.RECEIVED, duplicate_of=original
        ).id
    assert not _hold(db_sessions, waiting)  # it needs no slot: it is never prepared while it waits
    assert document(db_sessions, waiting).state == DocumentState.RECEIVED
