"""cds.trust.key_cache: the memory cache expires entries and stays bounded (least recently used first out)."""

from __future__ import annotations

from cds.core.errors import AUT_KEY_NOT_FOUND
from cds.trust.key_cache import MemoryKeyCache
from cds.trust.subscribers import Negative
from tests.trust.test_registry import Clock


async def test_memory_cache_ttl_and_bound():
    clock = Clock()
    c = MemoryKeyCache(max_entries=2, clock=clock)
    await c.set("a", Negative(), 10)
    await c.set("b", Negative(code=AUT_KEY_NOT_FOUND), 10)
    assert await c.get("a") == Negative()            # touch a: b is now the oldest
    await c.set("c", Negative(), 10)
    assert await c.get("b") is None and await c.get("a") is not None and len(c) == 2
    clock.t += 10
    assert await c.get("a") is None
