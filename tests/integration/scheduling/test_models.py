"""Dispatch and claims per model family on real Postgres (and Redis): each family's pages travel in
its own GPU queue, lanes and tenant turns hold per family, and a worker never takes a page of the
other family."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, GpuWorker, Page
from scriptorium.gpu_workers import record_heartbeat, retire
from scriptorium.lifecycle.claims import claim_next_batch, claim_pages, redispatch_foreign_pages
from scriptorium.messages import OCR_TASK
from scriptorium.model_families import ModelFamily
from scriptorium.queueing import Publisher, create_celery, gpu_queue, queue_of
from scriptorium.settings import Settings
from scriptorium.states import Lane
from tests.integration.scheduling.conftest import (
    LOST_AFTER_S,
    backlog,
    dispatch,
    new_tenant,
    page_states,
    read_page,
)
from tests.support.units import RecordingSink

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("quiet_queue")]

DEEPSEEK = ModelFamily.DEEPSEEK_OCR.value
UNLIMITED = ModelFamily.UNLIMITED_OCR.value


def _models(sessions: sessionmaker[Session], plan: RecordingSink) -> dict[uuid.UUID, str]:
    with sessions() as session:
        ids = {document_id for document_id, _, _ in plan.pages}
        return dict(session.execute(select(Document.id, Document.model).where(Document.id.in_(ids))).all())


def _owners(sessions: sessionmaker[Session], pages: list[tuple[uuid.UUID, int]]) -> list[uuid.UUID]:
    with sessions() as session:
        ids = {document_id for document_id, _ in pages}
        owner = dict(
            session.execute(select(Document.id, Document.tenant_id).where(Document.id.in_(ids))).all()
        )
    return [owner[document_id] for document_id, _ in pages]


def test_each_message_names_its_family_and_goes_to_that_family_s_queue(
    sessions: sessionmaker[Session],
) -> None:
    owner = new_tenant(sessions)
    deepseek = backlog(sessions, owner, pages=3, model=DEEPSEEK)
    unlimited = backlog(sessions, owner, pages=3, model=UNLIMITED)

    plan = dispatch(sessions, depth=10)

    models = _models(sessions, plan)
    assert {document_id for document_id, _, _ in plan.pages} == {deepseek, unlimited}
    messages = [message for message in plan.published if message.task == OCR_TASK]
    for message in messages:
        documents = {uuid.UUID(document_id) for document_id, _ in message.kwargs["pages"]}
        assert len({models[document_id] for document_id in documents}) == 1, "a batch mixes families"
        model = models[documents.pop()]
        assert message.model == message.kwargs["model"] == model
        assert queue_of(message) == gpu_queue(model)


def test_the_broker_depth_holds_per_family(sessions: sessionmaker[Session]) -> None:
    owner = new_tenant(sessions)
    backlog(sessions, owner, pages=10, model=DEEPSEEK)
    backlog(sessions, owner, pages=10, model=UNLIMITED)

    first = dispatch(sessions, depth=4)
    models = _models(sessions, first)
    sent = [models[document_id] for document_id, _, _ in first.pages]
    assert (sent.count(DEEPSEEK), sent.count(UNLIMITED)) == (4, 4)  # a backlog takes no slot of the other

    for document_id, page_no, _ in first.pages:
        if models[document_id] == UNLIMITED:
            assert read_page(sessions, document_id, page_no, model=UNLIMITED)
    refill = dispatch(sessions, depth=4)
    refilled = _models(sessions, refill)
    assert {refilled[document_id] for document_id, _, _ in refill.pages} == {UNLIMITED}
    assert len(refill.pages) == 4  # only the family whose messages were consumed is topped up


def test_tenant_turns_count_in_flight_pages_of_the_same_family_only(sessions: sessionmaker[Session]) -> None:
    busy, other = new_tenant(sessions), new_tenant(sessions)
    backlog(sessions, busy, pages=6, model=UNLIMITED)
    dispatch(sessions, depth=6)  # six unlimited-ocr pages of ``busy`` in flight
    busy_deepseek = backlog(sessions, busy, pages=4, model=DEEPSEEK)
    other_deepseek = backlog(sessions, other, pages=4, model=DEEPSEEK)

    plan = dispatch(sessions, depth=4)

    pages = [(document_id, page_no) for document_id, page_no, _ in plan.pages]
    assert {document_id for document_id, _ in pages} == {busy_deepseek, other_deepseek}
    assert sorted(_owners(sessions, pages)) == sorted([busy.id, busy.id, other.id, other.id])


def test_lanes_hold_per_family(sessions: sessionmaker[Session]) -> None:
    archive, person = new_tenant(sessions), new_tenant(sessions)
    backlog(sessions, archive, pages=10, priority=Lane.BULK, model=UNLIMITED)
    backlog(sessions, archive, pages=10, priority=Lane.BULK, model=DEEPSEEK)
    assert len(dispatch(sessions, depth=3).pages) == 6  # both families' bulk lanes are full
    interactive = backlog(sessions, person, pages=2, model=UNLIMITED)

    plan = dispatch(sessions, depth=3)

    assert [document_id for document_id, _, _ in plan.pages] == [interactive, interactive]
    assert plan.lane_of(interactive) is Lane.INTERACTIVE


def test_a_worker_claims_only_pages_of_its_family(sessions: sessionmaker[Session]) -> None:
    owner = new_tenant(sessions)
    unlimited = backlog(sessions, owner, pages=3, model=UNLIMITED)
    deepseek = backlog(sessions, owner, pages=3, model=DEEPSEEK)
    dispatch(sessions, depth=10)

    with sessions.begin() as session:
        batch = claim_next_batch(
            session, model=DEEPSEEK, batch_size=8, window_batches=2, owner="deepseek-worker", lease_s=60
        )
    assert {claim.document_id for claim in batch} == {deepseek}  # the older unlimited pages are not its
    with sessions.begin() as session:
        misrouted = claim_pages(
            session, [(unlimited, 1), (unlimited, 2)], model=DEEPSEEK, owner="deepseek-worker", lease_s=60
        )
    assert misrouted == []
    assert set(page_states(sessions, unlimited).values()) == {"queued"}

    with sessions.begin() as session:
        batch = claim_next_batch(
            session, model=UNLIMITED, batch_size=8, window_batches=2, owner="unlimited-worker", lease_s=60
        )
    assert sorted((claim.document_id, claim.page_no) for claim in batch) == [
        (unlimited, n) for n in (1, 2, 3)
    ]


def test_a_misrouted_message_hands_its_pages_back_to_their_family(sessions: sessionmaker[Session]) -> None:
    owner = new_tenant(sessions)
    unlimited = backlog(sessions, owner, pages=2, model=UNLIMITED)
    dispatch(sessions, depth=10)  # their message went to the unlimited-ocr queue

    with sessions.begin() as session:
        listed = [(unlimited, 1), (unlimited, 2)]
        assert claim_pages(session, listed, model=DEEPSEEK, owner="deepseek-worker", lease_s=60) == []
        found = redispatch_foreign_pages(session, listed, model=DEEPSEEK)
    assert found == {UNLIMITED: listed}
    with sessions() as session:
        sent = session.execute(select(Page.dispatched_at).where(Page.document_id == unlimited)).scalars()
        assert list(sent) == [None, None]  # due again at once, not after the lost-message timeout

    resend = dispatch(sessions, depth=10)
    assert [(document_id, page_no) for document_id, page_no, _ in resend.pages] == listed
    assert {message.model for message in resend.published if message.task == OCR_TASK} == {UNLIMITED}


def test_published_messages_land_in_their_family_s_redis_queue(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    owner = new_tenant(sessions)
    backlog(sessions, owner, pages=2, model=UNLIMITED)
    backlog(sessions, owner, pages=1, model=DEEPSEEK)
    plan = dispatch(sessions, depth=10)
    client = redis.Redis.from_url(settings.redis.url)
    queues = [gpu_queue(family) for family in ModelFamily]
    client.delete(*queues)
    try:
        assert Publisher(create_celery(settings)).publish(plan.published) == len(plan.published)
        lengths = {queue: int(client.llen(queue)) for queue in queues}
    finally:
        client.delete(*queues)
        client.close()
    expected = {queue: 0 for queue in queues}
    for message in plan.published:
        expected[queue_of(message) or ""] += 1
    assert lengths == expected
    assert expected[gpu_queue(DEEPSEEK)] >= 1 and expected[gpu_queue(UNLIMITED)] >= 1


def test_messages_of_a_family_without_workers_are_not_resent_until_one_is_heard_from(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        session.execute(update(GpuWorker).values(last_seen_at=func.now() - timedelta(days=1)))
    owner = new_tenant(sessions)
    waiting = backlog(sessions, owner, pages=2, model=UNLIMITED)
    assert len(dispatch(sessions, depth=10).pages) == 2

    def age_messages() -> None:
        with sessions.begin() as session:
            session.execute(
                update(Page)
                .where(Page.document_id == waiting)
                .values(dispatched_at=func.now() - timedelta(seconds=2 * LOST_AFTER_S))
            )

    age_messages()
    assert dispatch(sessions, depth=10).pages == []  # nobody could have consumed them: not lost
    identity = f"gpu-{uuid.uuid4()}:1"
    with sessions.begin() as session:
        record_heartbeat(session, identity=identity, model=UNLIMITED, model_revision="r")
    try:
        resent = dispatch(sessions, depth=10)  # a worker is there now: unclaimed messages were lost
        assert sorted(page_no for _, page_no, _ in resent.pages) == [1, 2]
    finally:
        with sessions.begin() as session:
            retire(session, identity)
