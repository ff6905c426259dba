import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from scriptorium.webhooks.schedule import AttemptResult, RetryPolicy, Verdict, parse_retry_after

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)


def _policy(jitter: float = 0.0) -> RetryPolicy:
    return RetryPolicy(schedule_s=SCHEDULE, jitter=jitter, retry_after_max_s=86400)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    decision = _policy().decide(AttemptResult(status), failures_before=6, rng=random.Random(0), now=NOW)
    assert decision.verdict is Verdict.DELIVERED


def test_410_is_gone_whatever_the_attempt() -> None:
    decision = _policy().decide(AttemptResult(410), failures_before=0, rng=random.Random(0), now=NOW)
    assert decision.verdict is Verdict.GONE


@pytest.mark.parametrize(
    "result", [AttemptResult(500), AttemptResult(302), AttemptResult(404), AttemptResult(None, "refused")]
)
def test_failures_follow_the_schedule_then_die(result: AttemptResult) -> None:
    policy = _policy()
    delays = [
        policy.decide(result, failures_before=n, rng=random.Random(0), now=NOW) for n in range(len(SCHEDULE))
    ]
    assert [d.verdict for d in delays] == [Verdict.RETRY] * len(SCHEDULE)
    assert [d.delay_s for d in delays] == list(SCHEDULE)
    last = policy.decide(result, failures_before=len(SCHEDULE), rng=random.Random(0), now=NOW)
    assert last.verdict is Verdict.DEAD


def test_jitter_stays_within_its_band_and_varies() -> None:
    rng = random.Random(42)
    delays = {
        _policy(0.2).decide(AttemptResult(500), failures_before=1, rng=rng, now=NOW).delay_s
        for _ in range(200)
    }
    assert min(delays) >= 240 and max(delays) <= 360 and len(delays) > 100


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_for_429_and_503_and_capped(status: int) -> None:
    policy = RetryPolicy(schedule_s=SCHEDULE, jitter=0.2, retry_after_max_s=600)
    asked = policy.decide(
        AttemptResult(status, retry_after="120"), failures_before=0, rng=random.Random(0), now=NOW
    )
    assert asked == asked.__class__(Verdict.RETRY, 120.0)
    capped = policy.decide(
        AttemptResult(status, retry_after="99999"), failures_before=0, rng=random.Random(0), now=NOW
    )
    assert capped.delay_s == 600.0


def test_retry_after_is_ignored_on_other_statuses_and_when_unreadable() -> None:
    policy = _policy()
    for result in (AttemptResult(500, retry_after="120"), AttemptResult(429, retry_after="soon")):
        assert policy.decide(result, failures_before=2, rng=random.Random(0), now=NOW).delay_s == 1800


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after(" 30 ", NOW) == 30.0
    assert parse_retry_after(format_datetime(NOW + timedelta(minutes=2), usegmt=True), NOW) == 120.0
    assert parse_retry_after(format_datetime(NOW - timedelta(minutes=2), usegmt=True), NOW) == 0.0
    assert parse_retry_after("-5", NOW) is None
    assert parse_retry_after("tomorrow", NOW) is None
