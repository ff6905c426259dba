"""How each input of a batch ended, from its item and (when it has one) its current document."""

from __future__ import annotations

from scriptorium.batches.states import ItemOutcome, ItemState
from scriptorium.states import DocumentState

_ITEM_OUTCOMES = {
    ItemState.PENDING: ItemOutcome.PENDING,
    ItemState.REJECTED: ItemOutcome.REJECTED,
    ItemState.SKIPPED: ItemOutcome.SKIPPED,
    ItemState.CANCELLED: ItemOutcome.CANCELLED,
}
_DOCUMENT_OUTCOMES = {
    DocumentState.COMPLETED: ItemOutcome.DONE,
    DocumentState.PARTIAL: ItemOutcome.PARTIAL,
    DocumentState.FAILED: ItemOutcome.FAILED,
    DocumentState.CANCELLED: ItemOutcome.CANCELLED,
}


def item_outcome(
    item_state: ItemState, document_state: DocumentState | None, *, duplicate: bool = False
) -> ItemOutcome:
    """``duplicate``: the document reused an earlier document's result (it has ``duplicate_of``)."""
    if item_state in _ITEM_OUTCOMES:
        return _ITEM_OUTCOMES[ItemState(item_state)]
    if document_state is None:
        return ItemOutcome.PENDING
    outcome = _DOCUMENT_OUTCOMES.get(DocumentState(document_state), ItemOutcome.IN_PROGRESS)
    if outcome is ItemOutcome.DONE and duplicate:
        return ItemOutcome.DUPLICATE
    return outcome


def empty_outcomes() -> dict[str, int]:
    return {outcome.value: 0 for outcome in ItemOutcome}
