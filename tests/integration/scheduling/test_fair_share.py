"""Lanes and per-tenant fair share, decided by plan_dispatch in SQL on real Postgres."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document
from scriptorium.lifecycle.claims import claim_next_batch, claim_page
from scriptorium.model_families import DEFAULT_MODEL_FAMILY
from scriptorium.states import DocumentState, Lane
from tests.integration.scheduling.conftest import backlog, dispatch, new_tenant, page_states, read_page
from tests.support.units import RecordingSink, cancel

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("quiet_queue")]


def _owners(sessions: sessionmaker[Session], plan: RecordingSink) -> list[uuid.UUID]:
    """The tenant of each dispatched page, in dispatch order."""
    with sessions() as session:
        tenants = {
            document_id: session.get(Document, document_id).tenant_id  # type: ignore[union-attr]
            for document_id, _, _ in plan.pages
        }
    return [tenants[document_id] for document_id, _, _ in plan.pages]


def _read_all(sessions: sessionmaker[Session], plan: RecordingSink) -> None:
    for document_id, page_no, _ in plan.pages:
        assert read_page(sessions, document_id, page_no)


def test_two_tenants_with_backlogs_take_turns(sessions: sessionmaker[Session]) -> None:
    big, small = new_tenant(sessions), new_tenant(sessions)
    big_document = backlog(sessions, big, pages=40)
    small_document = backlog(sessions, small, pages=10)

    plan = dispatch(sessions, depth=8)
    assert _owners(sessions, plan) == [big.id, small.id] * 4  # turns alternate, the older document first
    for _ in range(2):
        _read_all(sessions, plan)
        plan = dispatch(sessions, depth=8)
    owners = _owners(sessions, plan)
    assert (owners.count(small.id), owners.count(big.id)) == (2, 6)  # the small tenant's last pages
    _read_all(sessions, plan)

    # 3 rounds of 8 slots served the small tenant's 10 pages although the big one queued 40.
    assert set(page_states(sessions, small_document).values()) == {"done"}
    assert list(page_states(sessions, big_document).values()).count("queued") == 40 - 14


def test_a_tenant_with_pages_in_flight_waits_for_the_others_turns(sessions: sessionmaker[Session]) -> None:
    busy, newcomer = new_tenant(sessions), new_tenant(sessions)
    backlog(sessions, busy, pages=20)
    occupied = dispatch(sessions, depth=6)
    assert _owners(sessions, occupied) == [busy.id] * 6
    newcomer_document = backlog(sessions, newcomer, pages=10)
    for document_id, page_no, _ in occupied.pages[:2]:
        assert read_page(sessions, document_id, page_no)

    freed = dispatch(sessions, depth=6)

    # Two slots came free; the busy tenant still has 4 pages in flight, so both go to the newcomer.
    assert [document_id for document_id, _, _ in freed.pages] == [newcomer_document, newcomer_document]


def test_the_interactive_lane_is_not_blocked_by_a_full_bulk_lane(sessions: sessionmaker[Session]) -> None:
    archive, person = new_tenant(sessions), new_tenant(sessions)
    bulk_document = backlog(sessions, archive, pages=20, priority=Lane.BULK)
    bulk = dispatch(sessions, depth=4)
    assert len(bulk.pages) == 4
    assert {bulk.lane_of(document_id) for document_id, _, _ in bulk.pages} == {Lane.BULK}

    interactive_document = backlog(sessions, person, pages=3)
    plan = dispatch(sessions, depth=4)

    assert [document_id for document_id, _, _ in plan.pages] == [interactive_document] * 3
    assert plan.lane_of(interactive_document) is Lane.INTERACTIVE
    assert plan.lane_of(bulk_document) is Lane.INTERACTIVE  # not in this plan: the default


def test_batch_companions_take_interactive_pages_first_then_tenants_in_turn(
    sessions: sessionmaker[Session],
) -> None:
    first, second, person = new_tenant(sessions), new_tenant(sessions), new_tenant(sessions)
    first_document = backlog(sessions, first, pages=5, priority=Lane.BULK)
    second_document = backlog(sessions, second, pages=5, priority=Lane.BULK)
    interactive_document = backlog(sessions, person, pages=2)
    dispatch(sessions, depth=20)

    with sessions.begin() as session:
        claimed = claim_page(session, first_document, 1, owner="w", lease_s=60)
        assert claimed is not None
        companions = claim_next_batch(
            session, model=DEFAULT_MODEL_FAMILY, batch_size=3, window_batches=1, owner="w", lease_s=60
        )

    # Interactive pages first; then the other bulk tenant, since the claimer's own page was its turn.
    assert sorted((c.document_id, c.page_no) for c in companions) == sorted(
        [(interactive_document, 1), (interactive_document, 2), (second_document, 1)]
    )


def test_pages_of_a_paused_document_are_neither_dispatched_nor_claimed(
    sessions: sessionmaker[Session],
) -> None:
    owner = new_tenant(sessions)
    paused = backlog(sessions, owner, pages=3)
    dispatch(sessions, depth=1)  # page 1 has a message in the broker
    with sessions.begin() as session:
        session.execute(update(Document).where(Document.id == paused).values(state=DocumentState.PAUSED))

    assert dispatch(sessions, depth=10).pages == []
    assert not read_page(sessions, paused, 1)
    with sessions.begin() as session:
        assert (
            claim_next_batch(
                session, model=DEFAULT_MODEL_FAMILY, batch_size=8, window_batches=1, owner="w", lease_s=60
            )
            == []
        )
    assert set(page_states(sessions, paused).values()) == {"queued"}


def test_cancelling_frees_the_queued_slots_at_once(sessions: sessionmaker[Session]) -> None:
    owner = new_tenant(sessions)
    cancelled = backlog(sessions, owner, pages=10)
    waiting = backlog(sessions, owner, pages=10)
    assert {document_id for document_id, _, _ in dispatch(sessions, depth=4).pages} == {cancelled}
    cancel(sessions, cancelled)

    plan = dispatch(sessions, depth=4)

    assert [document_id for document_id, _, _ in plan.pages] == [waiting] * 4
    assert set(page_states(sessions, cancelled).values()) == {"cancelled"}
