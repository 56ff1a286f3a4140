"""What the Redis-backed shared-state stores (replay, key cache, rate limits) have in common.

Each store degrades to a process-local twin while Redis is unreachable, so an outage never turns
discover into a 500: the replicas merely stop agreeing until Redis is back (redis-py reconnects by
itself). `Degraded` logs that transition once per outage instead of once per request.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

log = logging.getLogger("cds.redis")

# A command can fail as a redis-py error, a raw socket error or a timeout, depending on where it broke.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)


class Degraded:
    """Rate-limited "using the local fallback" warnings for one store."""

    def __init__(self, what: str, every_s: float = 30.0) -> None:
        self.what = what
        self.every_s = every_s
        self._last = 0.0
        self.count = 0          # fallbacks so far (tests, debugging)

    def note(self, err: BaseException) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            log.warning("Redis unreachable for %s (%s: %s); using the process-local fallback",
                        self.what, type(err).__name__, err)
