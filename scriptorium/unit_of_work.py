"""One unit of work: a database transaction and the task messages it causes.

Domain code changes rows through ``uow.session`` (flushing when it needs ids or constraint
checks) and registers the messages its changes call for in ``uow.outbox``; it never commits and
never publishes. Whoever owns the unit (an API route, a worker task, a CLI command) calls
:meth:`UnitOfWork.commit`, which commits once and only then publishes what was registered, so
no message can name a row that does not exist. A message lost after the commit (the broker was
down) is re-sent by the sweeper, which finds the row still waiting; leaving the unit without
committing rolls back and drops its messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from scriptorium.messages import Message, Outbox


class MessageSink(Protocol):
    def publish(self, messages: list[Message]) -> int: ...


class UnitOfWork:
    """A session and an outbox; :meth:`commit` commits, then publishes.

    Used as a context manager: leaving it rolls back whatever was not committed. One unit may
    commit several times (e.g. a request that authenticates, then writes); each commit publishes
    the messages registered since the previous one.
    """

    def __init__(self, session: Session, sink: MessageSink) -> None:
        self.session = session
        self.outbox = Outbox()
        self._sink = sink

    def commit(self) -> int:
        """Commit the transaction, then publish its messages; returns how many were sent."""
        self.session.commit()
        messages = self.outbox.take()
        return self._sink.publish(messages) if messages else 0

    def rollback(self) -> None:
        self.session.rollback()
        self.outbox.take()

    def __enter__(self) -> UnitOfWork:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.rollback()
        self.session.close()


class UnitOfWorkFactory:
    """Opens units of work on one session factory and one message sink."""

    def __init__(self, sessions: sessionmaker[Session], sink: MessageSink) -> None:
        self.sessions = sessions
        self.sink = sink

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.sessions(), self.sink)

    @contextmanager
    def committing(self) -> Iterator[UnitOfWork]:
        """A unit that commits when its block ends normally (and rolls back on an exception)."""
        with self() as uow:
            yield uow
            uow.commit()
