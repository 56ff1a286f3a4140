"""Per-subscriber rate limits: one token bucket per authenticated subscriber (`CDS_RATE_LIMIT_RPS`
tokens per second, at most `CDS_RATE_LIMIT_BURST` saved up). A request costs one token; without one it
is a 429 NACK `AUT_RATE_LIMITED` with `Retry-After`.

With Redis the bucket is shared by every API replica: one Lua script reads, refills and takes a token
atomically, on Redis's own clock (replica clocks may disagree). While Redis is unreachable each replica
limits on its own (the process-local bucket), so an outage neither blocks nor un-limits anybody.

Replies to our own requests (`on_*`, i.e. fan-out answers) are not limited: they are bounded by the
requests we sent, and dropping them would lose data the BAP asked for.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Protocol

from cds.core import errors as E
from cds.core.errors import BecknError
from cds.redisstate import REDIS_ERRORS, Degraded

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from cds.config import Settings

REDIS_PREFIX = "cds:rl:"


class RateLimited(BecknError):
    """429 `AUT_RATE_LIMITED`; `retry_after` (seconds) becomes the Retry-After header."""

    def __init__(self, subscriber_id: str, retry_after: float) -> None:
        super().__init__(E.AUT_RATE_LIMITED,
                         f"rate limit exceeded for {subscriber_id}; retry after {math.ceil(retry_after)} s", 429)
        self.retry_after = retry_after


class RateLimiter(Protocol):
    async def acquire(self, key: str) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""


def _take(tokens: float, elapsed: float, rate: float, burst: float) -> tuple[float, float]:
    """(tokens left, wait) after refilling for `elapsed` seconds and taking one token if there is one."""
    tokens = min(burst, tokens + max(0.0, elapsed) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0
    return tokens, (1.0 - tokens) / rate


class MemoryRateLimiter:
    """Process-local buckets; bounded (least recently used subscribers are forgotten, i.e. start full)."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = rate, burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()   # key -> (tokens, at)

    async def acquire(self, key: str) -> float:
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens, wait = _take(tokens, now - at, self.rate, self.burst)
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


# KEYS[1] bucket hash; ARGV rate, burst. Returns the wait in seconds as a string ("0" = granted).
# Same arithmetic as `_take`; TIME is Redis's clock, so every replica sees one timeline.
_BUCKET_LUA = """
redis.replicate_commands()
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]), tonumber(b[2])
if tokens == nil or at == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return string.format('%.6f', wait)
"""


class RedisRateLimiter:
    """Buckets shared by all replicas (a hash per subscriber, expiring once it would be full again)."""

    def __init__(self, redis: "Redis", rate: float, burst: float, *, prefix: str = REDIS_PREFIX,
                 fallback: MemoryRateLimiter | None = None) -> None:
        self.rate, self.burst = rate, burst
        self.prefix = prefix
        self._script = redis.register_script(_BUCKET_LUA)
        self.fallback = fallback or MemoryRateLimiter(rate, burst)
        self.degraded = Degraded("rate limits")

    async def acquire(self, key: str) -> float:
        try:
            wait = await self._script(keys=[self.prefix + key], args=[repr(self.rate), repr(self.burst)])
        except REDIS_ERRORS as e:
            self.degraded.note(e)
            return await self.fallback.acquire(key)
        return float(wait)


def burst_of(settings: "Settings") -> float:
    """The bucket size: CDS_RATE_LIMIT_BURST, or two seconds' worth of the rate (at least 1)."""
    return float(settings.rate_limit_burst) if settings.rate_limit_burst > 0 else max(1.0, 2 * settings.rate_limit_rps)


def build_rate_limiter(settings: "Settings", redis: "Redis | None" = None) -> RateLimiter | None:
    """None when rate limiting is off (CDS_RATE_LIMIT_RPS unset or 0)."""
    if settings.rate_limit_rps <= 0:
        return None
    burst = burst_of(settings)
    if redis is None:
        return MemoryRateLimiter(settings.rate_limit_rps, burst)
    return RedisRateLimiter(redis, settings.rate_limit_rps, burst)


async def check_rate(limiter: RateLimiter | None, subscriber_id: str, action: str) -> None:
    """Raise `RateLimited` if `subscriber_id` has no token left (replies to our requests are exempt)."""
    if limiter is None or action.startswith("on_"):
        return
    wait = await limiter.acquire(subscriber_id)
    if wait > 0:
        raise RateLimited(subscriber_id, wait)
