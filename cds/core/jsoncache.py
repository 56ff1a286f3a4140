"""A bounded cache of unpacked item and offer JSON for answers (docs/decisions.md §G "CPU per discover").

Keyed by the stored (packed) bytes object itself: a bytes object caches its hash, equal bytes unpack to equal
JSON, and a re-published document arrives as new bytes, so an entry can never be stale. Bounded in bytes, per
process (each serving worker has its own). Two generations approximate LRU at the cost of one dict lookup per hit:
entries go into the young generation; once it holds half the budget it becomes the old one (the previous old one
is dropped) and an entry found there moves back to the young one. Plain (unpacked) stored JSON is never cached.

Besides the JSON, a user may keep one value of its own per stored bytes (`derived` / `keep`: a namespace apart
from the JSON's, in the same budget), e.g. what an answer shows of an item (`cds.services.assemble`): a value says
its `size` in bytes, and its user checks it against the document it was derived from (equal bytes may belong to
another document). A value may hold JSON of this cache (an item's offers, shared by the items that show them):
each time the value enters the young generation it reads that JSON again through `json` (`refresh`), so what it
holds is always the cache's own entries, never one the cache dropped (every byte held is counted once: an entry
of the JSON is never older than a value holding it, so it goes with or after the value).
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
    __slots__ = ("max_bytes", "_young", "_old", "_young_derived", "_old_derived", "_young_bytes", "hits",
                 "misses")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._young: dict[bytes, bytes] = {}
        self._old: dict[bytes, bytes] = {}
        self._young_derived: dict[bytes, Any] = {}
        self._old_derived: dict[bytes, Any] = {}
        self._young_bytes = 0
        self.hits = 0
        self.misses = 0

    def json(self, stored: bytes) -> bytes:
        """`unpack(stored)`, from the cache when it is there."""
        got = self._young.get(stored)
        if got is not None:
            self.hits += 1
            return got
        if stored[:1] != MARK or self.max_bytes <= 0:
            return stored if stored[:1] != MARK else unpack(stored)
        got = self._old.pop(stored, None)
        if got is None:
            self.misses += 1
            got = unpack(stored)
        else:
            self.hits += 1
        self._add(stored, got, len(got), self._young)
        return got

    def derived(self, stored: bytes) -> Any:
        """The value kept for `stored` by `keep`, or None."""
        got = self._young_derived.get(stored)
        if got is not None:
            self.hits += 1
            return got
        got = self._old_derived.pop(stored, None)
        if got is not None:
            self.hits += 1
            self._enter(stored, got)
        return got

    def keep(self, stored: bytes, value: Derived) -> None:
        """Keep `value` for `stored` (packed bytes only, like the JSON), in place of the value kept before."""
        if stored[:1] != MARK or self.max_bytes <= 0:
            return
        self.misses += 1
        was = self._young_derived.pop(stored, None)
        if was is not None:
            self._young_bytes -= len(stored) + was.size + ENTRY_OVERHEAD
        self._old_derived.pop(stored, None)
        self._enter(stored, value)

    def _enter(self, stored: bytes, value: Derived) -> None:
        # With the JSON it holds it must fit in a generation: then each of those entries fits as well (is cached)
        if len(stored) + value.size + ENTRY_OVERHEAD + value.held > self.max_bytes // 2:
            return
        self._add(stored, value, value.size, self._young_derived)
        value.refresh(self.json)        # after: a generation change meanwhile leaves the value the older one

    def _add(self, stored: bytes, value: Any, value_size: int, table: dict[bytes, Any]) -> None:
        size = len(stored) + value_size + ENTRY_OVERHEAD
        if size > self.max_bytes // 2:
            return                                       # larger than a generation: never cached
        if self._young_bytes + size > self.max_bytes // 2:
            # The young generation is full: it becomes the old one (at most max_bytes in all, both together).
            derived = table is self._young_derived
            self._old, self._young = self._young, {}
            self._old_derived, self._young_derived = self._young_derived, {}
            self._young_bytes = 0
            table = self._young_derived if derived else self._young
        table[stored] = value
        self._young_bytes += size

    @property
    def size_bytes(self) -> int:
        """Bytes held (keys, values and the per-entry estimate), at most `max_bytes`."""
        old = sum(len(k) + len(v) + ENTRY_OVERHEAD for k, v in self._old.items())
        old += sum(len(k) + v.size + ENTRY_OVERHEAD for k, v in self._old_derived.items())
        return self._young_bytes + old

    def __len__(self) -> int:
        return len(self._young) + len(self._old) + len(self._young_derived) + len(self._old_derived)
