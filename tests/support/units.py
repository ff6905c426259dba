"""Units of work for tests: real sessions, with the messages they would publish recorded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Event
from scriptorium.lifecycle.documents import cancel_document, lock_document
from scriptorium.messages import LANE_PRIORITY, OCR_TASK, PREPARE_TASK, Message
from scriptorium.states import Lane
from scriptorium.unit_of_work import UnitOfWork


@dataclass
class RecordingSink:
    """Takes the messages a committed unit publishes, instead of a broker."""

    published: list[Message] = field(default_factory=list)

    def publish(self, messages: list[Message]) -> int:
        self.published.extend(messages)
        return len(messages)

    @property
    def pages(self) -> list[tuple[uuid.UUID, int, str | None]]:
        """Pages of ``ocr`` messages: (document, page, request id), in the order they were sent."""
        return [
            (uuid.UUID(document_id), int(page_no), m.kwargs["request_id"])
            for m in self.published
            if m.task == OCR_TASK
            for document_id, page_no in m.kwargs["pages"]
        ]

    @property
    def batches(self) -> list[list[tuple[uuid.UUID, int]]]:
        """The engine batches of ``ocr`` messages."""
        return [
            [(uuid.UUID(document_id), int(page_no)) for document_id, page_no in m.kwargs["pages"]]
            for m in self.published
            if m.task == OCR_TASK
        ]

    @property
    def documents(self) -> list[tuple[uuid.UUID, str | None]]:
        """``prepare`` messages: (document, request id)."""
        return [
            (uuid.UUID(m.kwargs["document_id"]), m.kwargs["request_id"])
            for m in self.published
            if m.task == PREPARE_TASK
        ]

    def lane_of(self, document_id: uuid.UUID) -> Lane:
        """The lane a document's messages travelled in (interactive when none was sent)."""
        for message in self.published:
            named = {message.kwargs.get("document_id")} | {
                page[0] for page in message.kwargs.get("pages", [])
            }
            if str(document_id) in named:
                return next(lane for lane, priority in LANE_PRIORITY.items() if priority == message.priority)
        return Lane.INTERACTIVE


@contextmanager
def unit_of_work(sessions: sessionmaker[Session], sink: RecordingSink | None = None) -> Iterator[UnitOfWork]:
    """A unit that commits when the block ends normally; what it publishes goes to ``sink``."""
    with UnitOfWork(sessions(), sink or RecordingSink()) as uow:
        yield uow
        uow.commit()


def cancel(sessions: sessionmaker[Session], document_id: uuid.UUID) -> Event | None:
    """Cancel a document the way ``DELETE /v1/documents/{id}`` does."""
    with unit_of_work(sessions) as uow:
        locked = lock_document(uow.session, document_id)
        assert locked is not None
        return cancel_document(uow, locked)
