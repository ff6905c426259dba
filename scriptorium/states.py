"""Lifecycle states of documents and pages, and which of them are final."""

from __future__ import annotations

from enum import StrEnum


class DocumentState(StrEnum):
    RECEIVED = "received"
    PAUSED = "paused"  # waits for a tenant quota (budget, concurrency); its error says which
    PREPARING = "preparing"
    PROCESSING = "processing"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_DOCUMENT_STATES


TERMINAL_DOCUMENT_STATES = frozenset(
    {DocumentState.COMPLETED, DocumentState.PARTIAL, DocumentState.FAILED, DocumentState.CANCELLED}
)


class PageState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"  # blank page: no GPU work
    FAILED = "failed"  # the engine could not read it (permanent)
    DEAD = "dead"  # attempts exhausted by crashes, timeouts or lost leases
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_PAGE_STATES


TERMINAL_PAGE_STATES = frozenset(
    {PageState.DONE, PageState.SKIPPED, PageState.FAILED, PageState.DEAD, PageState.CANCELLED}
)
SUCCESSFUL_PAGE_STATES = frozenset({PageState.DONE, PageState.SKIPPED})
UNSUCCESSFUL_PAGE_STATES = frozenset({PageState.FAILED, PageState.DEAD})


def document_outcome(page_states: list[PageState]) -> DocumentState:
    """The terminal state a document takes once every page is final."""
    if not page_states:
        return DocumentState.FAILED
    succeeded = sum(state in SUCCESSFUL_PAGE_STATES for state in page_states)
    if succeeded == len(page_states):
        return DocumentState.COMPLETED
    if succeeded == 0:
        return DocumentState.FAILED
    return DocumentState.PARTIAL


class Lane(StrEnum):
    """Scheduling lanes: every interactive page is dispatched before any bulk page."""

    INTERACTIVE = "interactive"
    BULK = "bulk"

    @property
    def rank(self) -> int:
        return 0 if self is Lane.INTERACTIVE else 1


class EventType(StrEnum):
    DOCUMENT_COMPLETED = "document.completed"
    DOCUMENT_PARTIAL = "document.partial"
    DOCUMENT_FAILED = "document.failed"
    DOCUMENT_CANCELLED = "document.cancelled"
    BATCH_COMPLETED = "batch.completed"  # every input of the batch is accounted for and final
    BATCH_FAILED = "batch.failed"  # the batch's intake was refused (e.g. an unsafe archive)
    BATCH_CANCELLED = "batch.cancelled"

    @classmethod
    def for_document(cls, state: DocumentState) -> EventType:
        return cls(f"document.{state.value}")


ACTIVE_PAGE_STATES = (PageState.QUEUED, PageState.RUNNING)
