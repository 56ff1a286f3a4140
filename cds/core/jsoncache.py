"""A bounded cache of unpacked item and offer JSON for answers (docs/decisions.md §G "CPU per discover").

Keyed by the stored (packed) bytes object itself: a bytes object caches its hash, equal bytes unpack to equal
JSON, and a re-published document arrives as new bytes, so an entry can never be stale. Bounded in bytes, per
process (each serving worker has its own). Two generations approximate LRU at the cost of one dict lookup per hit:
entries go into the young generation; once it holds half the budget it becomes the old one (the previous old one
is dropped) and an entry found there moves back to the young one. Plain (unpacked) stored JSON is never cached.
"""

from __future__ import annotations

from cds.core.rawjson import MARK, unpack

ENTRY_OVERHEAD = 120   # bytes per entry beyond key and value: dict slot, the value's object header


class JsonCache:
    __slots__ = ("max_bytes", "_young", "_old", "_young_bytes", "hits", "misses")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._young: dict[bytes, bytes] = {}
        self._old: dict[bytes, bytes] = {}
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
        self._add(stored, got)
        return got

    def _add(self, stored: bytes, plain: bytes) -> None:
        size = len(stored) + len(plain) + ENTRY_OVERHEAD
        if size > self.max_bytes // 2:
            return                                       # larger than a generation: never cached
        if self._young_bytes + size > self.max_bytes // 2:
            # The young generation is full: it becomes the old one (at most max_bytes in all, both together).
            self._old, self._young, self._young_bytes = self._young, {}, 0
        self._young[stored] = plain
        self._young_bytes += size

    @property
    def size_bytes(self) -> int:
        """Bytes held (keys, values and the per-entry estimate), at most `max_bytes`."""
        old = sum(len(k) + len(v) + ENTRY_OVERHEAD for k, v in self._old.items())
        return self._young_bytes + old

    def __len__(self) -> int:
        return len(self._young) + len(self._old)
