"""Task messages: their names, their priorities, and the outbox a unit of work collects them in.

Messages carry ids only; the rows they name in Postgres say what to do, so a duplicate finds
nothing left to do and a lost one is re-sent by the sweeper.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scriptorium.states import Lane

PREPARE_TASK = "scriptorium.prepare"
OCR_TASK = "scriptorium.ocr_batch"  # one engine batch: pages of one mode
ASSEMBLE_TASK = "scriptorium.assemble_result"
DELIVER_WEBHOOKS_TASK = "scriptorium.deliver_webhooks"
EXPAND_BATCH_TASK = "scriptorium.expand_batch"  # a batch's intake: discover inputs, make documents
POLL_WATCHES_TASK = "scriptorium.poll_watches"  # the polling fallback of watched prefixes
INGEST_WATCH_TASK = "scriptorium.ingest_watch"  # turn a watch's recorded objects into documents

# Redis serves a queue's lower priority numbers first (kombu's priority_steps 0, 3, 6, 9): the
# bulk lane's messages wait behind every interactive one, on the CPU and the GPU queue alike.
LANE_PRIORITY = {Lane.INTERACTIVE: 0, Lane.BULK: 9}


@dataclass(frozen=True)
class Message:
    """A task message: ids only; the rows they name say what to do."""

    task: str
    kwargs: dict[str, Any]
    priority: int = 0
    countdown: float | None = None
    model: str | None = None  # OCR messages: the family whose GPU queue carries it


@dataclass
class Outbox:
    """The messages of one unit of work, in the order they were registered."""

    messages: list[Message] = field(default_factory=list)

    def prepare(self, document_id: uuid.UUID, request_id: str | None, lane: Lane = Lane.INTERACTIVE) -> None:
        self._add(PREPARE_TASK, {"document_id": str(document_id), "request_id": request_id}, priority=lane)

    def ocr(
        self,
        pages: Sequence[tuple[uuid.UUID, int]],
        request_id: str | None = None,
        lane: Lane = Lane.INTERACTIVE,
        *,
        model: str,
    ) -> None:
        """An engine batch: pages of one mode and one model family, read together by whichever GPU
        worker of that family takes it from the family's queue."""
        self._add(
            OCR_TASK,
            {
                "pages": [[str(document_id), page_no] for document_id, page_no in pages],
                "request_id": request_id,
                "model": model,
            },
            priority=lane,
            model=model,
        )

    def expand_batch(
        self, batch_id: uuid.UUID, lane: Lane = Lane.BULK, *, countdown: float | None = None
    ) -> None:
        """Run (or go on with) a batch's intake, now or after ``countdown`` seconds."""
        self._add(EXPAND_BATCH_TASK, {"batch_id": str(batch_id)}, priority=lane, countdown=countdown)

    def ingest_watch(self, watch_id: uuid.UUID) -> None:
        self._add(INGEST_WATCH_TASK, {"watch_id": str(watch_id)}, priority=Lane.BULK)

    def assemble(self, document_id: uuid.UUID) -> None:
        """Write a finished document's assembled files; CPU work kept off the GPU worker."""
        self._add(ASSEMBLE_TASK, {"document_id": str(document_id)})

    def deliver_webhooks(self) -> None:
        """Ask a sender to look for due webhook deliveries now rather than at its next poll."""
        self._add(DELIVER_WEBHOOKS_TASK, {})

    def take(self) -> list[Message]:
        taken, self.messages = self.messages, []
        return taken

    def _add(
        self,
        task: str,
        kwargs: dict[str, Any],
        *,
        priority: Lane = Lane.INTERACTIVE,
        countdown: float | None = None,
        model: str | None = None,
    ) -> None:
        self.messages.append(Message(task, kwargs, LANE_PRIORITY[priority], countdown, model))
