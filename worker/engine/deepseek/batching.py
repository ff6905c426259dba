"""Grouping pages into generate calls under a token budget.

Pages share a call only when their global views have the same size (the same mode); gundam pages
with different tile grids may share one. Within a mode, pages are taken shortest prompt first so
a call pads as little as possible. A call costs ``pages x (longest prompt + most new tokens)``,
the key/value positions it holds at its end; a page that alone exceeds the budget still runs.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchCandidate:
    group: Hashable
    prompt_tokens: int
    new_tokens: int


def batch_cost(candidates: Sequence[BatchCandidate]) -> int:
    if not candidates:
        return 0
    longest_prompt = max(candidate.prompt_tokens for candidate in candidates)
    most_new = max(candidate.new_tokens for candidate in candidates)
    return len(candidates) * (longest_prompt + most_new)


def plan_batches(
    candidates: Sequence[BatchCandidate], *, token_budget: int, max_pages: int
) -> list[list[int]]:
    """Indices of ``candidates`` split into batches; every index appears in exactly one batch."""
    if max_pages < 1:
        raise ValueError(f"max_pages must be at least 1, got {max_pages}")
    groups: dict[Hashable, list[int]] = {}
    for index, candidate in enumerate(candidates):
        groups.setdefault(candidate.group, []).append(index)
    batches: list[list[int]] = []
    for members in groups.values():
        current: list[int] = []
        for index in sorted(members, key=lambda member: (candidates[member].prompt_tokens, member)):
            trial = [*current, index]
            too_big = batch_cost([candidates[member] for member in trial]) > token_budget
            if current and (len(trial) > max_pages or too_big):
                batches.append(current)
                current = [index]
            else:
                current = trial
        if current:
            batches.append(current)
    return batches
