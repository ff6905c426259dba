"""The unit of work: one commit, then the messages; nothing published for what was not committed."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Tenant
from scriptorium.messages import OCR_TASK, PREPARE_TASK, Message
from scriptorium.model_families import DEFAULT_MODEL_FAMILY
from scriptorium.states import Lane
from scriptorium.unit_of_work import UnitOfWork, UnitOfWorkFactory
from tests.support.units import RecordingSink

pytestmark = pytest.mark.integration


class CommitWatchingSink(RecordingSink):
    """Records, for each publish, whether the row the messages name was visible to another session."""

    def __init__(self, sessions: sessionmaker[Session], name: str) -> None:
        super().__init__()
        self.sessions, self.name, self.row_visible_at_publish = sessions, name, []

    def publish(self, messages: list[Message]) -> int:
        with self.sessions() as other:
            visible = other.execute(select(Tenant).where(Tenant.name == self.name)).first() is not None
        self.row_visible_at_publish.append(visible)
        return super().publish(messages)


def test_messages_are_published_only_after_the_commit(sessions: sessionmaker[Session]) -> None:
    name = f"uow-{uuid.uuid4()}"
    sink = CommitWatchingSink(sessions, name)
    document_id = uuid.uuid4()
    with UnitOfWork(sessions(), sink) as uow:
        uow.session.add(Tenant(name=name))
        uow.outbox.prepare(document_id, "req", Lane.BULK)
        uow.session.flush()
        assert sink.published == []  # registered, not sent
        assert uow.commit() == 1
    assert sink.row_visible_at_publish == [True]
    assert [(m.task, m.kwargs["document_id"]) for m in sink.published] == [(PREPARE_TASK, str(document_id))]


def test_leaving_without_commit_rolls_back_and_drops_the_messages(sessions: sessionmaker[Session]) -> None:
    name = f"uow-{uuid.uuid4()}"
    sink = RecordingSink()

    def failing_route() -> None:
        with UnitOfWork(sessions(), sink) as uow:
            uow.session.add(Tenant(name=name))
            uow.outbox.ocr([(uuid.uuid4(), 1)], model=DEFAULT_MODEL_FAMILY)
            uow.session.flush()
            raise RuntimeError("the route failed after registering a message")

    with pytest.raises(RuntimeError, match="after registering"):
        failing_route()
    assert sink.published == []
    with sessions() as session:
        assert session.execute(select(Tenant).where(Tenant.name == name)).first() is None


def test_each_commit_publishes_what_was_registered_since_the_last(sessions: sessionmaker[Session]) -> None:
    sink = RecordingSink()
    first, second = uuid.uuid4(), uuid.uuid4()
    with UnitOfWorkFactory(sessions, sink)() as uow:
        uow.outbox.ocr([(first, 1)], model=DEFAULT_MODEL_FAMILY)
        uow.commit()
        uow.outbox.ocr([(second, 2)], model=DEFAULT_MODEL_FAMILY)
        uow.rollback()  # a unit abandoned half-way sends nothing more
        uow.commit()
    assert [(m.task, m.kwargs["pages"]) for m in sink.published] == [(OCR_TASK, [[str(first), 1]])]


def test_committing_units_roll_back_on_an_exception(sessions: sessionmaker[Session]) -> None:
    sink = RecordingSink()
    units = UnitOfWorkFactory(sessions, sink)

    def failing_task() -> None:
        with units.committing() as uow:
            uow.outbox.assemble(uuid.uuid4())
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        failing_task()
    with units.committing() as uow:
        uow.outbox.deliver_webhooks()
    assert [m.task for m in sink.published] == ["scriptorium.deliver_webhooks"]
