from __future__ import annotations

import random

import pytest
import torch

from worker.engine.deepseek.ngram import WindowedNoRepeatNGram

VOCAB = 12
EOS = 1


def reference_banned(
    generated: list[int], ngram_size: int, window_size: int, whitelist: set[int]
) -> set[int]:
    """The official ngram_norepeat.py semantics, written out plainly over one row of generated ids."""
    if len(generated) < ngram_size:
        return set()
    prefix = tuple(generated[len(generated) - ngram_size + 1 :])
    banned = set()
    for start in range(max(0, len(generated) - window_size), len(generated) - ngram_size + 1):
        ngram = tuple(generated[start : start + ngram_size])
        if ngram[:-1] == prefix:
            banned.add(ngram[-1])
    return banned - whitelist


def guard(
    ngram_size: int,
    window_size: int,
    *,
    whitelist: tuple[int, ...] = (),
    prompt_width: int = 0,
    limits: list[int] | None = None,
) -> WindowedNoRepeatNGram:
    return WindowedNoRepeatNGram(
        ngram_size=ngram_size,
        window_size=window_size,
        whitelist=whitelist,
        prompt_width=prompt_width,
        limits=limits or [1000],
        eos_id=EOS,
    )


def banned_set(processor: WindowedNoRepeatNGram, row: list[int], prompt: list[int] | None = None) -> set[int]:
    ids = torch.tensor([(prompt or []) + row])
    scores = processor(ids, torch.zeros(1, VOCAB))
    return set(torch.nonzero(scores[0] == float("-inf")).flatten().tolist())


def test_matches_the_reference_on_random_sequences() -> None:
    rng = random.Random(0)
    for _ in range(500):
        ngram_size, window_size = rng.randint(2, 6), rng.randint(1, 30)
        whitelist = {rng.randrange(2, VOCAB)} if rng.random() < 0.5 else set()
        row = [rng.randrange(2, 6) for _ in range(rng.randint(0, 60))]
        processor = guard(ngram_size, window_size, whitelist=tuple(whitelist))
        assert banned_set(processor, row) == reference_banned(row, ngram_size, window_size, whitelist)


def test_bans_the_id_that_would_repeat_an_ngram() -> None:
    assert banned_set(guard(3, 50), [5, 6, 7, 5, 6]) == {7}


def test_only_ngrams_starting_inside_the_window_count() -> None:
    row = [5, 6, 7, 9, 9, 9, 9, 5, 6]
    assert banned_set(guard(3, 9), row) == {7}
    assert banned_set(guard(3, 8), row) == set()


def test_whitelisted_ids_are_never_banned() -> None:
    cells = [4, 10, 11, 4, 10]  # <td> </td> style repeats
    assert banned_set(guard(3, 50), cells) == {11}
    assert banned_set(guard(3, 50, whitelist=(11,)), cells) == set()


def test_prompt_ids_are_ignored() -> None:
    prompt = [5, 6, 7]
    assert banned_set(guard(3, 50, prompt_width=3), [5, 6], prompt=prompt) == set()
    assert banned_set(guard(3, 50, prompt_width=0), [5, 6], prompt=prompt) == {7}


def test_rows_are_independent() -> None:
    processor = guard(3, 50, limits=[1000, 1000])
    ids = torch.tensor([[5, 6, 7, 5, 6], [5, 6, 8, 5, 9]])
    scores = processor(ids, torch.zeros(2, VOCAB))
    assert torch.nonzero(scores[0] == float("-inf")).flatten().tolist() == [7]
    assert not torch.isinf(scores[1]).any()


def test_intervention_is_recorded_only_when_the_greedy_choice_was_banned() -> None:
    processor = guard(3, 50, limits=[1000, 1000])
    ids = torch.tensor([[5, 6, 7, 5, 6], [5, 6, 7, 5, 6]])
    scores = torch.zeros(2, VOCAB)
    scores[0, 7] = 5.0  # row 0 wants to repeat the n-gram
    scores[1, 8] = 5.0  # row 1 wants something else
    processor(ids, scores)
    assert processor.intervened.tolist() == [True, False]


def test_finished_rows_and_rows_past_their_limit_do_not_count() -> None:
    processor = guard(3, 50, limits=[1000, 5, 1000])
    ids = torch.tensor([[5, 6, 7, 5, 6], [5, 6, 7, 5, 6], [5, EOS, 7, 5, 6]])
    scores = torch.zeros(3, VOCAB)
    scores[:, 7] = 5.0
    processor(ids, scores)
    assert processor.intervened.tolist() == [True, False, False]


@pytest.mark.parametrize(("ngram_size", "window_size"), [(1, 10), (0, 10), (3, 0)])
def test_invalid_sizes_are_refused(ngram_size: int, window_size: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        guard(ngram_size, window_size)
