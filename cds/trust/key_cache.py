"""The registry key cache: subscriber records (and negative answers) by lookup key, for `ttl_s` set by the
registry client (docs/decisions.md §W Registry). In memory (bounded LRU) or in Redis, shared by the workers, with
the memory cache standing in while Redis is down.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Protocol

import msgspec

from cds.redisstate import REDIS_ERRORS, Degraded
from cds.trust.subscribers import Negative, Subscriber

if TYPE_CHECKING:
    from redis.asyncio import Redis


CacheValue = Subscriber | Negative


class KeyCache(Protocol):
    async def get(self, key: str) -> CacheValue | None: ...

    async def set(self, key: str, value: CacheValue, ttl_s: float) -> None: ...


class MemoryKeyCache:
    """Bounded LRU with per-entry TTL (one process; the Redis cache shares entries across replicas)."""

    def __init__(self, max_entries: int = 10000, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._data: OrderedDict[str, tuple[float, CacheValue]] = OrderedDict()

    async def get(self, key: str) -> CacheValue | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[0] <= self.clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return hit[1]

    async def set(self, key: str, value: CacheValue, ttl_s: float) -> None:
        if ttl_s <= 0:
            self._data.pop(key, None)
            return
        self._data[key] = (self.clock() + ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class _Cached(msgspec.Struct, array_like=True):
    """A cache value on the wire: exactly one of the two is set."""
    subscriber: Subscriber | None = None
    negative: Negative | None = None


_cached_encoder = msgspec.msgpack.Encoder()
_cached_decoder = msgspec.msgpack.Decoder(_Cached)


class RedisKeyCache:
    """The key cache shared by every API replica: one registry lookup serves them all, and a revocation
    reaches them all within the same TTL (Redis expires the entry; negative entries alike). While Redis is
    unreachable the replica's own memory cache answers, so signature checks keep working."""

    def __init__(self, redis: "Redis", *, prefix: str = "cds:keys:", fallback: KeyCache | None = None) -> None:
        self._redis = redis
        self.prefix = prefix
        self.fallback = fallback if fallback is not None else MemoryKeyCache()
        self.degraded = Degraded("the registry key cache")

    async def get(self, key: str) -> CacheValue | None:
        try:
            data = await self._redis.get(self.prefix + key)
        except REDIS_ERRORS as e:
            self.degraded.note(e)
            return await self.fallback.get(key)
        if data is None:
            return None
        try:
            rec = _cached_decoder.decode(data)
        except msgspec.DecodeError:        # written by another version: a miss, fetched again
            return None
        return rec.subscriber if rec.subscriber is not None else rec.negative

    async def set(self, key: str, value: CacheValue, ttl_s: float) -> None:
        ms = int(ttl_s * 1000)
        try:
            if ms <= 0:
                await self._redis.delete(self.prefix + key)
                return
            rec = _Cached(negative=value) if isinstance(value, Negative) else _Cached(subscriber=value)
            await self._redis.set(self.prefix + key, _cached_encoder.encode(rec), px=ms)
        except REDIS_ERRORS as e:
            self.degraded.note(e)
            await self.fallback.set(key, value, ttl_s)
