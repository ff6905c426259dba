from __future__ import annotations

import pytest

from worker.engine.deepseek.batching import BatchCandidate, batch_cost, plan_batches


def candidate(group: str, prompt: int, new: int = 100) -> BatchCandidate:
    return BatchCandidate(group=group, prompt_tokens=prompt, new_tokens=new)


def test_cost_is_pages_times_the_padded_length() -> None:
    assert batch_cost([candidate("base", 300, 50), candidate("base", 310, 40)]) == 2 * (310 + 50)
    assert batch_cost([]) == 0


def test_modes_never_share_a_batch() -> None:
    candidates = [
        candidate("tiny", 100),
        candidate("base", 300),
        candidate("tiny", 100),
        candidate("base", 300),
    ]
    batches = plan_batches(candidates, token_budget=10_000, max_pages=8)
    assert sorted(map(sorted, batches)) == [[0, 2], [1, 3]]


def test_pages_per_batch_are_capped() -> None:
    batches = plan_batches([candidate("tiny", 100)] * 5, token_budget=10**9, max_pages=2)
    assert [len(batch) for batch in batches] == [2, 2, 1]


def test_the_token_budget_bounds_a_batch() -> None:
    batches = plan_batches([candidate("base", 300, 200)] * 5, token_budget=1500, max_pages=8)
    assert [len(batch) for batch in batches] == [3, 2]
    assert all(batch_cost([candidate("base", 300, 200)] * len(batch)) <= 1500 for batch in batches)


def test_a_page_over_the_budget_still_runs_alone() -> None:
    assert plan_batches([candidate("gundam", 1000, 8000)], token_budget=100, max_pages=8) == [[0]]


def test_short_prompts_are_batched_together() -> None:
    prompts = [1300, 500, 1290, 510]
    batches = plan_batches([candidate("gundam", p, 10) for p in prompts], token_budget=10**9, max_pages=2)
    assert batches == [[1, 3], [2, 0]]


def test_every_page_is_planned_once() -> None:
    candidates = [candidate(group, 100 + index) for index, group in enumerate("abcabcaab")]
    batches = plan_batches(candidates, token_budget=350, max_pages=3)
    assert sorted(index for batch in batches for index in batch) == list(range(len(candidates)))


def test_max_pages_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_pages"):
        plan_batches([candidate("a", 1)], token_budget=10, max_pages=0)
