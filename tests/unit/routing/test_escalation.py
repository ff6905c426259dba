from __future__ import annotations

import pytest

from scriptorium.modes import Mode
from scriptorium.policy import RoutingPolicy
from tests.unit.routing.conftest import engine_result
from worker.engine.base import Block
from worker.routing.escalation import (
    BLOCK_TAG_TOKENS,
    BOX_TOKENS,
    choose_kept_result,
    judge,
    output_text_tokens,
)


def test_a_clean_result_is_kept_as_it_is() -> None:
    verdict = judge(engine_result(Mode.SMALL, output=400), RoutingPolicy())

    assert not verdict.escalate
    assert verdict.next_mode is None
    assert not verdict.under_read
    assert verdict.output_ratio == pytest.approx(399 / 100)


def test_generation_that_never_reached_eos_goes_one_mode_up() -> None:
    verdict = judge(engine_result(Mode.TINY, output=300, finished=False), RoutingPolicy())

    assert verdict.escalate
    assert verdict.next_mode is Mode.SMALL
    assert "EOS" in verdict.reason


def test_repetition_goes_one_mode_up() -> None:
    verdict = judge(engine_result(Mode.BASE, output=500, repetition=True), RoutingPolicy())

    assert verdict.escalate
    assert verdict.next_mode is Mode.LARGE
    assert "repeats" in verdict.reason


def test_too_much_text_per_vision_token_goes_one_mode_up() -> None:
    # small on a letter page: 100 valid tokens; 1,400 text tokens is 14x
    verdict = judge(engine_result(Mode.SMALL, output=1401), RoutingPolicy())

    assert verdict.escalate
    assert verdict.next_mode is Mode.BASE
    assert verdict.output_ratio == pytest.approx(14.0)


def test_the_escalation_ratio_is_the_policys() -> None:
    result = engine_result(Mode.SMALL, output=1401)

    assert not judge(result, RoutingPolicy(escalation_ratio=15)).escalate


def test_grounding_markup_is_not_counted_as_text() -> None:
    blocks = tuple(Block("text", ((0, 0, 10, 10),), "words") for _ in range(30))
    result = engine_result(Mode.SMALL, output=1401, blocks=blocks)

    assert output_text_tokens(result) == 1400 - 30 * (BLOCK_TAG_TOKENS + BOX_TOKENS)
    assert not judge(result, RoutingPolicy()).escalate


def test_at_the_top_mode_the_page_is_flagged_under_read_not_escalated() -> None:
    verdict = judge(engine_result(Mode.GUNDAM, output=8000, finished=False), RoutingPolicy())

    assert not verdict.escalate
    assert verdict.under_read
    assert verdict.reason.startswith("under_read")
    assert "highest mode" in verdict.reason


def test_max_mode_is_the_ceiling_of_escalation() -> None:
    verdict = judge(engine_result(Mode.BASE, output=500, repetition=True), RoutingPolicy(max_mode=Mode.BASE))

    assert not verdict.escalate
    assert verdict.under_read


def test_a_fixed_mode_is_never_escalated() -> None:
    verdict = judge(engine_result(Mode.SMALL, output=200, finished=False), RoutingPolicy(mode="small"))

    assert not verdict.escalate
    assert verdict.under_read


def test_the_escalation_budget_is_respected() -> None:
    policy = RoutingPolicy(max_escalations=2)
    result = engine_result(Mode.BASE, output=300, finished=False)

    assert judge(result, policy, escalations_so_far=1).escalate
    spent = judge(result, policy, escalations_so_far=2)
    assert not spent.escalate
    assert spent.under_read
    assert "budget" in spent.reason


def test_modes_that_add_no_vision_tokens_on_the_page_are_passed_over() -> None:
    small_image = (600, 400)  # gundam does not tile it: no more tokens than base, fewer than large
    result = engine_result(Mode.LARGE, output=200, finished=False, size=small_image)

    verdict = judge(result, RoutingPolicy(), page_size=small_image)

    assert not verdict.escalate
    assert verdict.under_read


def test_a_clean_later_attempt_is_kept_and_not_flagged() -> None:
    first = engine_result(Mode.TINY, output=900, finished=False)
    second = engine_result(Mode.SMALL, output=600)

    kept, under_read = choose_kept_result([first, second], RoutingPolicy())

    assert kept is second
    assert not under_read


def test_without_a_clean_attempt_the_best_flawed_one_is_kept_flagged() -> None:
    looping = engine_result(Mode.LARGE, output=8000, finished=False, repetition=True)
    dense = engine_result(Mode.GUNDAM, output=13000)  # finished, but far past 12x of 856 tokens
    looping_again = engine_result(Mode.BASE, output=8000, finished=False)

    kept, under_read = choose_kept_result([looping_again, looping, dense], RoutingPolicy())

    assert kept is dense
    assert under_read


def test_a_page_needs_an_attempt_to_keep() -> None:
    with pytest.raises(ValueError, match="at least one"):
        choose_kept_result([], RoutingPolicy())
