import pytest

from scriptorium.cli import build_parser


def test_quota_options_take_numbers_or_none_and_omitted_ones_stay_unchanged() -> None:
    args = build_parser().parse_args(
        ["tenant", "quota", "acme", "--pages", "1000", "--tokens", "none", "--rate", "2.5"]
    )
    assert (args.name, args.pages, args.tokens, args.rate) == ("acme", 1000, None, 2.5)
    assert not hasattr(args, "burst") and not hasattr(args, "max_concurrent")


def test_showing_a_quota_changes_nothing() -> None:
    args = build_parser().parse_args(["tenant", "quota", "acme"])
    assert not any(hasattr(args, option) for option in ("pages", "tokens", "max_concurrent", "rate", "burst"))


def test_negative_limits_are_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tenant", "quota", "acme", "--max-concurrent", "-1"])
