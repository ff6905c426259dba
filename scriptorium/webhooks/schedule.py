"""What an attempt's result means for its delivery: delivered, retry later, dead, or endpoint gone.

2xx is success and 410 Gone disables the endpoint. Any other answer or failure is retried on the
configured schedule with jitter; 429 and 503 answers that carry ``Retry-After`` are retried when
the receiver asked (capped). When the schedule is exhausted the delivery is dead.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE = 410


@dataclass(frozen=True)
class AttemptResult:
    """What one POST produced; ``status_code`` is None when no HTTP answer came back."""

    status_code: int | None
    error: str | None = None
    retry_after: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"
    GONE = "gone"  # dead, and the endpoint is disabled


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay_s: float = 0.0  # for RETRY: seconds until the next attempt


@dataclass(frozen=True)
class RetryPolicy:
    schedule_s: Sequence[int]
    jitter: float
    retry_after_max_s: int

    def decide(
        self, result: AttemptResult, *, failures_before: int, rng: random.Random, now: datetime
    ) -> Decision:
        """The verdict for an attempt made after ``failures_before`` consecutive failures."""
        if result.succeeded:
            return Decision(Verdict.DELIVERED)
        if result.status_code == GONE:
            return Decision(Verdict.GONE)
        if failures_before >= len(self.schedule_s):
            return Decision(Verdict.DEAD)
        requested = (
            parse_retry_after(result.retry_after, now)
            if result.status_code in RETRY_AFTER_STATUSES and result.retry_after
            else None
        )
        if requested is not None:
            return Decision(Verdict.RETRY, min(requested, float(self.retry_after_max_s)))
        scheduled = float(self.schedule_s[failures_before])
        return Decision(Verdict.RETRY, scheduled * rng.uniform(1 - self.jitter, 1 + self.jitter))


def parse_retry_after(value: str, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
