import time
import uuid

import redis

from api.ratelimit import ALLOW, Limit, RateLimiter
from scriptorium.settings import RateLimitSettings

DEFAULTS = RateLimitSettings(requests_per_s=50.0, burst=200)


def _unreachable() -> RateLimiter:
    return RateLimiter(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), DEFAULTS)


def test_a_tenant_s_own_limits_override_the_defaults_one_by_one() -> None:
    limiter = _unreachable()
    assert limiter.limit_for(None, None) == Limit(50.0, 200)
    assert limiter.limit_for(2.0, None) == Limit(2.0, 200)
    assert limiter.limit_for(None, 5) == Limit(50.0, 5)


def test_a_zero_rate_turns_the_limit_off() -> None:
    assert not Limit(0.0, 10).enabled and not Limit(5.0, 0).enabled and Limit(0.1, 1).enabled
    assert _unreachable().take(uuid.uuid4(), Limit(0.0, 10)) is ALLOW


def test_requests_pass_when_redis_is_unreachable() -> None:
    started = time.monotonic()
    assert _unreachable().take(uuid.uuid4(), Limit(1.0, 1)) is ALLOW
    assert time.monotonic() - started < 5
