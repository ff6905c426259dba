"""The token bucket in a real Redis: burst, refill, Retry-After, one bucket per tenant."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from api.ratelimit import KEY_PREFIX, Limit, RateLimiter
from scriptorium.settings import RateLimitSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def limiter(redis_url: str) -> Iterator[RateLimiter]:
    bucket = RateLimiter.connect(redis_url, RateLimitSettings())
    yield bucket
    bucket.close()


def test_a_burst_then_refusals_with_the_time_to_the_next_token(limiter: RateLimiter) -> None:
    tenant, limit = uuid.uuid4(), Limit(requests_per_s=0.5, burst=3)
    decisions = [limiter.take(tenant, limit) for _ in range(4)]
    assert [decision.allowed for decision in decisions] == [True, True, True, False]
    assert [decision.remaining for decision in decisions[:3]] == [2, 1, 0]
    assert decisions[3].retry_after_s == 2  # a whole token back at 0.5 per second


def test_the_bucket_refills_at_the_rate(limiter: RateLimiter) -> None:
    tenant, limit = uuid.uuid4(), Limit(requests_per_s=10.0, burst=1)
    assert limiter.take(tenant, limit).allowed
    assert not limiter.take(tenant, limit).allowed
    time.sleep(0.15)
    assert limiter.take(tenant, limit).allowed


def test_tenants_have_their_own_buckets_which_expire(limiter: RateLimiter, redis_url: str) -> None:
    first, second, limit = uuid.uuid4(), uuid.uuid4(), Limit(requests_per_s=1.0, burst=1)
    assert limiter.take(first, limit).allowed and not limiter.take(first, limit).allowed
    assert limiter.take(second, limit).allowed
    ttl = redis.Redis.from_url(redis_url).ttl(f"{KEY_PREFIX}{first}")
    assert 0 < ttl <= 2  # a full bucket needs no key: it goes once it would be full again
