import click
import pytest

from scriptorium.cli.tenants import given_limits, tenant_quota


def _parse(*arguments: str) -> click.Context:
    return tenant_quota.make_context("quota", list(arguments))


def test_quota_options_take_numbers_or_none_and_omitted_ones_stay_unchanged() -> None:
    parsed = _parse("acme", "--pages", "1000", "--tokens", "none", "--rate", "2.5")
    assert parsed.params["name"] == "acme"
    assert given_limits(parsed) == {"page_budget": 1000, "token_budget": None, "rate_limit_per_s": 2.5}


def test_showing_a_quota_changes_nothing() -> None:
    assert given_limits(_parse("acme")) == {}


@pytest.mark.parametrize("value", ["-1", "many"])
def test_negative_or_non_numeric_limits_are_refused(value: str) -> None:
    with pytest.raises(click.BadParameter):
        _parse("acme", "--max-concurrent", value)
