"""Length-aware batching: similar predicted lengths share a batch, within the lane and turn window."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

import pytest

from scriptorium.batching import claim_order, next_batch, plan_batches, wasted_steps
from scriptorium.states import Lane


@dataclass(frozen=True)
class Due:
    predicted_tokens: int
    turn: int
    lane: str = Lane.BULK.value
    page_no: int = 1
    document_id: uuid.UUID = field(default_factory=uuid.uuid4)


def _bulk(*lengths: int) -> list[Due]:
    """One bulk page per length, in claim order (turns 1, 2, 3 …)."""
    return [Due(predicted_tokens=length, turn=turn) for turn, length in enumerate(lengths, start=1)]


def _lengths(batch: list[Due]) -> list[int]:
    return [row.predicted_tokens for row in batch]


def test_wasted_steps_is_the_gap_to_the_longest_row_summed() -> None:
    assert wasted_steps([100, 400, 250]) == 300 + 0 + 150
    assert wasted_steps([7]) == 0
    assert wasted_steps([]) == 0


def test_similar_lengths_are_grouped_and_waste_less_than_claim_order() -> None:
    rows = _bulk(50, 2000, 60, 1900, 55, 2100, 45, 1800)

    batches = plan_batches(rows, 4)

    assert [sorted(_lengths(batch)) for batch in batches] == [[45, 50, 55, 60], [1800, 1900, 2000, 2100]]
    fifo = [rows[:4], rows[4:]]
    assert sum(wasted_steps(_lengths(b)) for b in batches) < sum(wasted_steps(_lengths(b)) for b in fifo)


def test_the_front_page_is_always_in_the_next_batch() -> None:
    rows = _bulk(3000, 10, 11, 12, 13, 14, 15, 16, 17)

    batch = next_batch(rows, 4)

    assert batch[0] is rows[0]
    assert _lengths(batch) == [3000, 15, 16, 17]  # the longest others keep the long head company


def test_nothing_beyond_the_window_is_taken() -> None:
    rows = _bulk(500, 10, 10, 10, 10, 10, 10, 10, 500, 500, 500)

    batch = next_batch(rows, 2, window_batches=4)  # window: the first 8 rows

    assert batch == [rows[0], rows[1]]  # the equally long pages at places 9-11 are out of reach
    assert next_batch(rows, 2, window_batches=6)[1] is rows[8]


def test_a_batch_comes_back_in_claim_order() -> None:
    rows = _bulk(900, 10, 880, 20, 870)

    batch = next_batch(rows, 3)

    assert batch == [rows[0], rows[2], rows[4]]


def test_interactive_pages_fill_the_batch_before_any_bulk_page() -> None:
    bulk = _bulk(100, 100, 100, 100)
    interactive = [
        Due(predicted_tokens=length, turn=turn, lane=Lane.INTERACTIVE.value)
        for turn, length in enumerate([2000, 10, 1500, 100, 90], start=1)
    ]

    first = next_batch(bulk + interactive, 4)

    assert all(row.lane == Lane.INTERACTIVE.value for row in first)
    assert interactive[0] in first
    rest = [row for row in bulk + interactive if row not in first]
    second = next_batch(rest, 4)
    assert second[0].lane == Lane.INTERACTIVE.value  # the interactive page left over goes first
    assert sum(row.lane == Lane.INTERACTIVE.value for row in second) == 1


def test_a_lower_lane_fills_what_the_higher_lane_leaves_with_the_closest_lengths() -> None:
    interactive = [Due(predicted_tokens=1000, turn=1, lane=Lane.INTERACTIVE.value)]
    bulk = _bulk(20, 950, 30, 990, 40, 1010)

    batch = next_batch(interactive + bulk, 4)

    assert batch[0] is interactive[0]
    assert bulk[0] in batch  # the bulk lane's front page is in the batch too
    assert sorted(_lengths(batch)) == [20, 990, 1000, 1010]


def test_ties_go_to_the_earlier_turns() -> None:
    rows = _bulk(100, 100, 100, 100, 100, 100)

    assert next_batch(rows, 3) == rows[:3]


def test_rows_are_taken_in_lane_and_turn_order_whatever_order_they_come_in() -> None:
    rows = _bulk(10, 20, 30)
    shuffled = [rows[2], rows[0], rows[1]]

    assert claim_order(shuffled) == rows
    assert next_batch(shuffled, 1) == [rows[0]]


def test_a_page_k_places_from_the_front_waits_at_most_k_batches() -> None:
    generator = random.Random(7)
    rows = _bulk(*[generator.choice([20, 200, 2000]) + generator.randrange(30) for _ in range(200)])

    batches = plan_batches(rows, 8)

    served_in = {id(row): index for index, batch in enumerate(batches) for row in batch}
    assert sorted(served_in.values()) == sorted(index for index, b in enumerate(batches) for _ in b)
    assert len(served_in) == len(rows)
    for place, row in enumerate(rows):
        assert served_in[id(row)] <= place
        assert all(len(batch) == 8 for batch in batches)
    fifo = [rows[start : start + 8] for start in range(0, len(rows), 8)]
    assert sum(wasted_steps(_lengths(b)) for b in batches) < 0.5 * sum(
        wasted_steps(_lengths(b)) for b in fifo
    )


@pytest.mark.parametrize("size", [1, 3, 8])
def test_every_row_is_batched_exactly_once(size: int) -> None:
    rows = _bulk(*range(37, 0, -1))

    batches = plan_batches(rows, size)

    assert sorted(id(row) for batch in batches for row in batch) == sorted(id(row) for row in rows)
    assert all(len(batch) == size for batch in batches[:-1])


def test_nonsense_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        next_batch(_bulk(1), 0)
    with pytest.raises(ValueError, match="at least 1"):
        next_batch(_bulk(1), 4, window_batches=0)


def test_no_rows_no_batch() -> None:
    assert next_batch([], 4) == []
    assert plan_batches([], 4) == []
