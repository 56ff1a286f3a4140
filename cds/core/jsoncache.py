"""A bounded cache of unpacked item and offer JSON for answers (docs/decisions.md §G "CPU per discover").

Keyed by the stored (packed) bytes object itself: a bytes object caches its hash, equal bytes unpack to equal
JSON, and a re-published document arrives as new bytes, so an entry can never be stale. Bounded in bytes, per
process (each serving worker has its own). Generations approximate LRU at the cost of one dict lookup per hit:
entries go into the young generation and an entry found in an older one moves back to it; once the young one holds
three quarters of the budget it becomes the old one, the old one the oldest (the oldest one before it is dropped).
When the budget is reached, entries of the oldest generation that holds any go, in the order they entered the
young one (values first, then JSON). So a working set up to three quarters of the budget is read without moves,
and an entry read at least once while a quarter of the budget enters stays (two generations of half the budget,
the old one dropped whole, kept up to half: the 100k benchmark mix's ~39 MB missed up to a fifth of its reads).
Plain (unpacked) stored JSON is never cached.

Besides the JSON, a user may keep one value of its own per stored bytes (`derived` / `keep`: a namespace apart
from the JSON's, in the same budget), e.g. what an answer shows of an item (`cds.services.assemble`): a value says
its `size` in bytes, and its user checks it against the document it was derived from (equal bytes may belong to
another document). A value may hold JSON of this cache (an item's offers, shared by the items that show them):
each time the value enters the young generation it reads that JSON again through `json` (`refresh`), so what it
holds is always the cache's own entries, never one the cache dropped (every byte held is counted once: an entry
of the JSON is never in an older generation than a value holding it, and a generation's values go before
its JSON).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from cds.core.rawjson import MARK, unpack

ENTRY_OVERHEAD = 120   # bytes per entry beyond key and value: dict slot, the value's object header


class Derived(Protocol):
    size: int          # bytes the value holds itself besides its key (ENTRY_OVERHEAD excluded)
    held: int          # bytes of the entries of this cache's JSON that it holds (keys and ENTRY_OVERHEAD included)

    def refresh(self, json: Callable[[bytes], bytes]) -> None:
        """Read the JSON it holds again through `json` (this cache's), holding what that returns."""


class JsonCache:
    __slots__ = ("max_bytes", "_json", "_derived", "_bytes", "_leaving", "hits", "misses")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        # Per generation, young first: the JSON, the values (`derived`), the bytes they hold.
        self._json: list[dict[bytes, bytes]] = [{}, {}, {}]
        self._derived: list[dict[bytes, Any]] = [{}, {}, {}]
        self._bytes = [0, 0, 0]
        # Per generation, its keys in the order they go (values, then JSON), taken from the end: made when it
        # first has to give room.
        self._leaving: list[list[tuple[bool, bytes]] | None] = [None, None, None]
        self.hits = 0
        self.misses = 0

    def json(self, stored: bytes) -> bytes:
        """`unpack(stored)`, from the cache when it is there."""
        got = self._json[0].get(stored)
        if got is not None:
            self.hits += 1
            return got
        if stored[:1] != MARK or self.max_bytes <= 0:
            return stored if stored[:1] != MARK else unpack(stored)
        got = self._take(self._json, stored, _json_size)
        if got is None:
            self.misses += 1
            got = unpack(stored)
        else:
            self.hits += 1
        self._add(stored, got, _json_size(stored, got), False)
        return got

    def derived(self, stored: bytes) -> Any:
        """The value kept for `stored` by `keep`, or None."""
        got = self._derived[0].get(stored)
        if got is not None:
            self.hits += 1
            return got
        got = self._take(self._derived, stored, _derived_size)
        if got is not None:
            self.hits += 1
            self._enter(stored, got)
        return got

    def keep(self, stored: bytes, value: Derived) -> None:
        """Keep `value` for `stored` (packed bytes only, like the JSON), in place of the value kept before."""
        if stored[:1] != MARK or self.max_bytes <= 0:
            return
        self.misses += 1
        was = self._derived[0].pop(stored, None)
        if was is not None:
            self._bytes[0] -= _derived_size(stored, was)
        self._take(self._derived, stored, _derived_size)
        self._enter(stored, value)

    def _take(self, tables: list[dict[bytes, Any]], stored: bytes, size: Callable[[bytes, Any], int]) -> Any:
        """Remove `stored` from the older generations of `tables` and return what it held there (or None)."""
        for gen in (1, 2):
            got = tables[gen].pop(stored, None)
            if got is not None:
                self._bytes[gen] -= size(stored, got)
                return got
        return None

    def _enter(self, stored: bytes, value: Derived) -> None:
        # With the JSON it holds it must fit in half the budget: then each of those entries fits as well (is cached)
        if _derived_size(stored, value) + value.held > self.max_bytes // 2:
            return
        self._add(stored, value, _derived_size(stored, value), True)
        value.refresh(self.json)        # after: a generation change meanwhile leaves the value the older one

    def _add(self, stored: bytes, value: Any, size: int, derived: bool) -> None:
        if size > self.max_bytes // 2:
            return                                       # larger than half the budget: never cached
        if self._bytes[0] + size > self.max_bytes * 3 // 4:
            # The young generation is full: it becomes the old one, the old one the oldest (the oldest is dropped)
            self._json = [{}, *self._json[:2]]
            self._derived = [{}, *self._derived[:2]]
            self._bytes = [0, *self._bytes[:2]]
            self._leaving = [None, None, self._leaving[1]]
        while sum(self._bytes) + size > self.max_bytes:
            # the young one with the new entry is within the budget: an older one holds something
            gen = 2 if self._bytes[2] else 1
            order = self._leaving[gen]
            if order is None:           # values go first (they may hold the generation's JSON), in order of entry
                order = self._leaving[gen] = [(False, k) for k in reversed(self._json[gen])] + \
                    [(True, k) for k in reversed(self._derived[gen])]
            is_derived, key = order.pop()
            gone = (self._derived if is_derived else self._json)[gen].pop(key, None)
            if gone is not None:
                self._bytes[gen] -= (_derived_size if is_derived else _json_size)(key, gone)
        (self._derived if derived else self._json)[0][stored] = value
        self._bytes[0] += size

    @property
    def size_bytes(self) -> int:
        """Bytes held (keys, values and the per-entry estimate), at most `max_bytes`."""
        return sum(self._bytes)

    def __len__(self) -> int:
        return sum(map(len, self._json)) + sum(map(len, self._derived))


def _json_size(stored: bytes, plain: bytes) -> int:
    return len(stored) + len(plain) + ENTRY_OVERHEAD


def _derived_size(stored: bytes, value: Derived) -> int:
    return len(stored) + value.size + ENTRY_OVERHEAD
