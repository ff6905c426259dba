from __future__ import annotations

import pytest
from pydantic import ValidationError

from scriptorium.modes import MODE_ORDER, Mode
from scriptorium.policy import RoutingPolicy


def test_default_policy_is_auto_at_ratio_ten_over_every_mode() -> None:
    policy = RoutingPolicy()

    assert policy.mode == "auto"
    assert policy.fixed_mode is None
    assert policy.target_ratio == 10
    assert policy.max_escalations == 2
    assert policy.allowed_modes() == MODE_ORDER
    assert policy.escalation_ceiling() is Mode.GUNDAM


def test_min_and_max_mode_bound_the_modes_auto_may_choose() -> None:
    policy = RoutingPolicy(min_mode=Mode.SMALL, max_mode=Mode.LARGE)

    assert policy.allowed_modes() == (Mode.SMALL, Mode.BASE, Mode.LARGE)
    assert policy.escalation_ceiling() is Mode.LARGE


def test_a_fixed_mode_allows_only_itself_and_never_escalates_past_it() -> None:
    policy = RoutingPolicy(mode="base")

    assert policy.fixed_mode is Mode.BASE
    assert policy.allowed_modes() == (Mode.BASE,)
    assert policy.escalation_ceiling() is Mode.BASE


@pytest.mark.parametrize(
    "fields",
    [
        {"min_mode": "large", "max_mode": "small"},
        {"mode": "gundam", "max_mode": "base"},
        {"mode": "tiny", "min_mode": "small"},
        {"target_ratio": 0},
        {"target_ratio": -3},
        {"max_escalations": -1},
        {"mode": "huge"},
        {"colour": "blue"},
    ],
)
def test_inconsistent_or_unknown_fields_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RoutingPolicy.model_validate(fields)


def test_json_round_trip_keeps_only_what_was_set() -> None:
    policy = RoutingPolicy(target_ratio=8, max_mode=Mode.LARGE)

    raw = policy.to_json()

    assert '"max_mode":"large"' in raw
    assert "escalation_ratio" not in raw
    assert RoutingPolicy.from_json(raw) == policy
    assert RoutingPolicy.from_json(None) == RoutingPolicy()
    assert RoutingPolicy.from_json("  ") == RoutingPolicy()


def test_a_request_overlays_the_tenant_default_and_is_validated_again() -> None:
    tenant = RoutingPolicy(max_mode=Mode.LARGE, target_ratio=12)

    request = tenant.overlay({"target_ratio": 8})

    assert request.max_mode is Mode.LARGE
    assert request.target_ratio == 8
    with pytest.raises(ValidationError):
        tenant.overlay({"mode": "gundam"})


def test_stored_dump_validates_back_to_the_same_policy() -> None:
    policy = RoutingPolicy(mode="small", max_escalations=0)

    assert RoutingPolicy.model_validate(policy.model_dump(mode="json")) == policy
