"""How each input of a batch ended, from its item and (when it has one) its current document."""

from __future__ import annotations

from scriptorium.batches.states import ItemOutcome, ItemState
from scriptorium.states import DocumentState

_ITEM_OUTCOMES = {
    ItemState.PENDING.value: ItemOutcome.PENDING,
    ItemState.REJECTED.value: ItemOutcome.REJECTED,
    ItemState.SKIPPED.value: ItemOutcome.SKIPPED,
    ItemState.CANCELLED.value: ItemOutcome.CANCELLED,
}
_DOCUMENT_OUTCOMES = {
    DocumentState.COMPLETED.value: ItemOutcome.DONE,
    DocumentState.PARTIAL.value: ItemOutcome.PARTIAL,
    DocumentState.FAILED.value: ItemOutcome.FAILED,
    DocumentState.CANCELLED.value: ItemOutcome.CANCELLED,
}


def item_outcome(item_state: str, document_state: str | None, *, duplicate: bool = False) -> ItemOutcome:
    """``duplicate``: the document reused an earlier document's result (it has ``duplicate_of``)."""
    if item_state in _ITEM_OUTCOMES:
        return _ITEM_OUTCOMES[item_state]
    if document_state is None:
        return ItemOutcome.PENDING
    outcome = _DOCUMENT_OUTCOMES.get(document_state, ItemOutcome.IN_PROGRESS)
    if outcome is ItemOutcome.DONE and duplicate:
        return ItemOutcome.DUPLICATE
    return outcome


def empty_outcomes() -> dict[str, int]:
    return {outcome.value: 0 for outcome in ItemOutcome}
