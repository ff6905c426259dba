"""Per-tenant request rate limits: a token bucket in Redis, shared by every API process.

A tenant's bucket holds up to ``burst`` tokens and refills at ``requests_per_s``; each
authenticated request takes one. An empty bucket answers 429 with ``Retry-After``: the whole
seconds until a token is back. The bucket is one Redis hash updated by a Lua script, so
concurrent requests on any API process see one count and Redis' clock is the only clock. When
Redis cannot be reached the request is let through: the limit protects the fleet and must not
take the API down with the broker.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

import redis

from scriptorium.logging import get_logger
from scriptorium.settings import RateLimitSettings

log = get_logger(__name__)
KEY_PREFIX = "scriptorium:ratelimit:"

# KEYS[1] the bucket; ARGV rate per second, burst. Returns {allowed, tokens left, seconds to wait}.
_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(saved[1]) or burst
local at = tonumber(saved[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring(tokens), tostring(wait)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int  # whole tokens left in the bucket
    retry_after_s: int  # 0 when allowed


ALLOW = Decision(allowed=True, remaining=0, retry_after_s=0)


@dataclass(frozen=True)
class Limit:
    requests_per_s: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.requests_per_s > 0 and self.burst > 0


class RateLimiter:
    def __init__(self, client: redis.Redis, defaults: RateLimitSettings) -> None:
        self._client = client
        self._defaults = defaults
        self._take = client.register_script(_BUCKET_SCRIPT)

    @classmethod
    def connect(cls, url: str, defaults: RateLimitSettings) -> RateLimiter:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        return cls(client, defaults)

    def limit_for(self, requests_per_s: float | None, burst: int | None) -> Limit:
        """A tenant's own limits where set, the settings' defaults otherwise."""
        return Limit(
            requests_per_s=self._defaults.requests_per_s if requests_per_s is None else requests_per_s,
            burst=self._defaults.burst if burst is None else burst,
        )

    def take(self, tenant_id: uuid.UUID, limit: Limit) -> Decision:
        """Take one token from the tenant's bucket."""
        if not limit.enabled:
            return ALLOW
        try:
            allowed, tokens, wait = self._take(
                keys=[f"{KEY_PREFIX}{tenant_id}"], args=[limit.requests_per_s, limit.burst]
            )
        except redis.RedisError as error:
            log.warning("ratelimit.unavailable", error=str(error))
            return ALLOW
        return Decision(
            allowed=bool(int(allowed)),
            remaining=int(float(tokens)),
            retry_after_s=0 if int(allowed) else max(1, math.ceil(float(wait))),
        )

    def close(self) -> None:
        self._client.close()
