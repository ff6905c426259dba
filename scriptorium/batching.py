"""Length-aware engine batches: pages of similar predicted output length share a generate call.

The rows of one generate call decode until the longest row finishes, so a short page batched with
a long one wastes ``long - short`` decode steps. The router predicts each page's text tokens
(``routing.predicted_text_tokens``), which is enough to group like with like.

The rule, for due pages of one mode in claim order (lane first, then the tenants' turns):

1. **Window.** Only the first ``window_batches * batch_size`` pages in claim order take part, so
   a page is never taken ahead of more than that many waiting pages: lane order and tenant fair
   share hold to within one window.
2. **Lanes.** Lanes fill the batch in priority order: a page of a lower lane takes a slot only
   when every page of the higher lanes in the window is in the batch already.
3. **Head first.** From each lane the batch takes the lane's first page in claim order (its
   oldest turn) and others of that lane. The page at the front of the claim order is therefore
   always in the next batch, and every page is served by the time it reaches the front: a page
   ``k`` places from the front waits at most ``k`` batches (in plain claim order,
   ``k // batch_size``).
4. **Least waste.** Of the batches that satisfy 1-3, the one whose pages waste the fewest decode
   steps (the sum over the batch of its longest prediction minus each row's prediction) wins; ties
   go to the batch whose pages are earlier in claim order.

:func:`next_batch` picks one batch (what a claim takes); :func:`plan_batches` applies it until
the rows run out (what a simulation or a multi-batch claim needs). Both are pure: they read the
rows' attributes and return the same row objects, so rows of a SQLAlchemy result can be passed
as they come. A claim reads the candidates of one mode in claim order, at most
``window_batches * batch_size`` of them, with the page's prediction as
``coalesce((p.routing->>'predicted_text_tokens')::int, 0) AS predicted_tokens``, ``d.priority AS
lane`` and the tenant's ``turn`` as the companion query numbers it; then it locks the rows
:func:`next_batch` returns (and claims again if another worker took one meanwhile).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol, TypeVar

from scriptorium.states import Lane

DEFAULT_WINDOW_BATCHES = 4


class DueRow(Protocol):
    """What batching reads of a due page (a claim query's row, or any object with these names)."""

    @property
    def document_id(self) -> uuid.UUID: ...

    @property
    def page_no(self) -> int: ...

    @property
    def predicted_tokens(self) -> int: ...

    @property
    def lane(self) -> str: ...  # a :class:`Lane` value

    @property
    def turn(self) -> int: ...  # the page's place in its tenant's order within the lane, from 1


Row = TypeVar("Row", bound=DueRow)


def next_batch(
    rows: Sequence[Row], batch_size: int, *, window_batches: int = DEFAULT_WINDOW_BATCHES
) -> list[Row]:
    """The next batch of at most ``batch_size`` rows, in claim order; empty when ``rows`` is."""
    if batch_size < 1 or window_batches < 1:
        raise ValueError("batch_size and window_batches must be at least 1")
    window = claim_order(rows)[: batch_size * window_batches]
    position = {id(row): place for place, row in enumerate(window)}
    chosen: list[Row] = []
    for lane_rows in _by_lane(window):
        need = batch_size - len(chosen)
        if need <= 0:
            break
        if len(lane_rows) <= need:
            chosen.extend(lane_rows)
        else:
            chosen.extend(_best_with_head(lane_rows, need, chosen, position))
    return sorted(chosen, key=lambda row: position[id(row)])


def plan_batches(
    rows: Sequence[Row], batch_size: int, *, window_batches: int = DEFAULT_WINDOW_BATCHES
) -> list[list[Row]]:
    """Every row in batches, each the :func:`next_batch` of the rows the earlier ones left."""
    remaining = claim_order(rows)
    batches = []
    while remaining:
        batch = next_batch(remaining, batch_size, window_batches=window_batches)
        taken = {id(row) for row in batch}
        remaining = [row for row in remaining if id(row) not in taken]
        batches.append(batch)
    return batches


def claim_order(rows: Sequence[Row]) -> list[Row]:
    """Interactive before bulk, then by turn; rows that tie keep the order they came in."""
    return sorted(rows, key=lambda row: (Lane(row.lane).rank, row.turn))


def wasted_steps(predicted_or_true: Sequence[int]) -> int:
    """Decode steps a batch of these output lengths spends on rows that have already finished."""
    if not predicted_or_true:
        return 0
    longest = max(predicted_or_true)
    return sum(longest - length for length in predicted_or_true)


def _by_lane(window: list[Row]) -> list[list[Row]]:
    lanes: dict[int, list[Row]] = {}
    for row in window:
        lanes.setdefault(Lane(row.lane).rank, []).append(row)
    return [lanes[rank] for rank in sorted(lanes)]


def _best_with_head(lane_rows: list[Row], need: int, fixed: list[Row], position: dict[int, int]) -> list[Row]:
    """``need`` rows of this lane, its first row among them, that waste the fewest decode steps.

    For a given longest prediction ``m`` the waste is least when the other rows are the longest
    ones not above ``m``; so each ``m`` from the head's own prediction up is tried once.
    """
    head, others = lane_rows[0], lane_rows[1:]
    longest_first = sorted(others, key=lambda row: (-row.predicted_tokens, position[id(row)]))
    fixed_lengths = [row.predicted_tokens for row in fixed]
    best: tuple[int, int, list[Row]] | None = None
    for ceiling in sorted(
        {row.predicted_tokens for row in lane_rows if row.predicted_tokens >= head.predicted_tokens}
    ):
        fitting = [row for row in longest_first if row.predicted_tokens <= ceiling][: need - 1]
        if len(fitting) < need - 1:
            continue
        batch = [head, *fitting]
        waste = wasted_steps(fixed_lengths + [row.predicted_tokens for row in batch])
        lateness = sum(position[id(row)] for row in batch)
        if best is None or (waste, lateness) < best[:2]:
            best = (waste, lateness, batch)
    assert best is not None  # the largest ceiling lets every row fit
    return best[2]
