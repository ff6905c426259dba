"""How an input's outcome follows from its item and its current document."""

from __future__ import annotations

import pytest

from scriptorium.batches.outcomes import item_outcome
from scriptorium.batches.states import ItemOutcome


@pytest.mark.parametrize(
    ("item_state", "document_state", "duplicate", "outcome"),
    [
        ("pending", None, False, ItemOutcome.PENDING),
        ("rejected", None, False, ItemOutcome.REJECTED),
        ("skipped", None, False, ItemOutcome.SKIPPED),
        ("cancelled", None, False, ItemOutcome.CANCELLED),
        ("ingested", "received", False, ItemOutcome.IN_PROGRESS),
        ("ingested", "paused", False, ItemOutcome.IN_PROGRESS),
        ("ingested", "processing", False, ItemOutcome.IN_PROGRESS),
        ("ingested", "completed", False, ItemOutcome.DONE),
        ("ingested", "completed", True, ItemOutcome.DUPLICATE),
        ("ingested", "received", True, ItemOutcome.IN_PROGRESS),  # waits for its original
        ("ingested", "partial", False, ItemOutcome.PARTIAL),
        ("ingested", "failed", False, ItemOutcome.FAILED),
        ("ingested", "cancelled", False, ItemOutcome.CANCELLED),
    ],
)
def test_outcomes(item_state: str, document_state: str | None, duplicate: bool, outcome: ItemOutcome) -> None:
    assert item_outcome(item_state, document_state, duplicate=duplicate) is outcome
    assert outcome.is_final is (outcome not in (ItemOutcome.PENDING, ItemOutcome.IN_PROGRESS))
