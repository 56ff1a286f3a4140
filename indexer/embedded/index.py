"""In-memory index of the embedded backend: documents plus the structures that narrow a query to
a small candidate set. Exact matching and ordering stay with `cds.core.matching` (see `store.py`).

Layout (memory matters: 1M connectors must fit in a few GB):
- `docs[id]` holds the ItemDoc itself (strings and numbers interned or pooled, offers and equal lists shared
  per catalog, item and offer JSON packed: `indexer.embedded.compact`, docs/decisions.md §P); ids are reused.
- numpy columns per doc id: alive, active (the item's `is_active`), lon/lat, max_kw/min_kw, catalog slot and
  position inside the catalog's order, a uint16 code for low-cardinality keyword fields and a uint64 bit set for
  low-cardinality list fields. Range, bbox and keyword filters run vectorised over candidate ids
  (`indexer.embedded.narrow`, which `Index` inherits).
- per doc the row of its availability windows in `windows` (`indexer.embedded.windows`: each distinct set once),
  so a filter's window conjunct is decided for a block of candidates at once.
- a grid of `grid_deg` cells (dict cell -> set of ids) for spatial narrowing, and exact postings
  (value -> id, tuple or set of ids) for the high-cardinality keys looked up by QR/item/EVSE id.
- per catalog an `Entry` with its doc ids in no-origin order, so an unnarrowed query can stop
  after `limit` matches instead of scanning everything; per catalog slot the fields of its liveness
  (`cds.core.matching.catalog_live_mask`), so a search decides liveness for a block of candidates at once.

Every structure is changed only by `put`/`delete`/`purge`, each one synchronous step: a search
(also synchronous) sees a catalog entirely old or entirely new.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from cds.core.documents import CatalogMeta, CatalogRecord, ItemDoc, upgrade_terms
from cds.core.geodesy import DEG
from cds.core.matching import catalog_live_mask
from indexer.embedded.compact import compact_record
from indexer.embedded.windows import WindowSets
from indexer.embedded.narrow import (
    _MAX_BITS, _OVERFLOW_CODE, BITS, CATALOG_TERMS, CODED, NUMERIC, POSTED, Narrower, Posting,
)

_SMALL_POSTING = 8               # up to this many ids a posting is a tuple (a set costs 4x the memory)


def offer_end(items: Iterable[ItemDoc]) -> float | None:
    """Earliest offer validity end among the items (None: no offer ever expires)."""
    ends = [o.valid_to for d in items for o in d.offers if o.valid_to is not None]
    return min(ends) if ends else None


class Entry:
    """One stored catalog (a purge may swap in documents with fewer offers; nothing else changes)."""

    __slots__ = ("slot", "key", "meta", "record", "raw_z", "ids", "first_key", "last_key", "offer_end")

    def __init__(self, slot: int, record: CatalogRecord, raw_z: bytes, ids: np.ndarray,
                 first_key: Any, last_key: Any, offer_end: float | None) -> None:
        self.slot, self.key, self.meta, self.record = slot, record.meta.key, record.meta, record
        self.raw_z = raw_z                 # the catalog as published (CatalogMeta.raw), zlib-compressed
        self.ids, self.first_key, self.last_key, self.offer_end = ids, first_key, last_key, offer_end


@dataclass
class Prepared:
    """A catalog's index entries computed off to the side, ready for a quick swap-in."""

    record: CatalogRecord              # meta.raw emptied: it lives compressed in raw_z
    raw_z: bytes
    first_key: Any
    last_key: Any
    offer_end: float | None
    lon: np.ndarray
    lat: np.ndarray
    active: np.ndarray
    nums: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]
    bits: dict[str, np.ndarray]


class Index(Narrower):
    def __init__(self, order_key: Callable[[ItemDoc, CatalogMeta], Any], *, grid_deg: float = 0.05) -> None:
        self.order_key = order_key                 # the no-origin order of cds.core.matching, per doc
        self.grid_deg = grid_deg
        self._nx = int(math.ceil(360 / grid_deg)) + 2
        self.docs: list[ItemDoc | None] = []
        self.entry_of: list[Entry | None] = []
        self._free: list[int] = []
        self._cap = 0
        self.alive = np.zeros(0, bool)
        self.active = np.zeros(0, bool)
        self.lon = np.zeros(0)
        self.lat = np.zeros(0)
        self.coslat = np.zeros(0)                   # cos(lat): the nearest-first search's haversine reads it
        self.cat = np.zeros(0, np.int32)
        self.pos = np.zeros(0, np.int32)
        self.wrow = np.zeros(0, np.int32)            # the row of the item's windows in `self.windows`
        self.windows = WindowSets()
        self.nums = {a: np.zeros(0) for a in NUMERIC}
        self.codes = {a: np.zeros(0, np.uint16) for a in CODED}
        self.bits = {a: np.zeros(0, np.uint64) for a in BITS}
        self.vocab: dict[str, dict[str, int]] = {a: {} for a in CODED + BITS}
        self.grid: dict[int, set[int]] = {}
        self._grid_arrays: dict[int, np.ndarray] = {}   # cell -> its ids as an array, dropped on change
        self.postings: dict[str, dict[str, Posting]] = {a: {} for a in POSTED}
        self.catalogs: dict[tuple[str, str], Entry] = {}
        self.entries: list[Entry | None] = []
        # per catalog slot: meta.is_active, valid_from and expires_at (NaN: None), set when the slot is taken
        self.slot_active = np.zeros(0, bool)
        self.slot_from = np.zeros(0)
        self.slot_expires = np.zeros(0)
        self._slot_live: tuple[float, np.ndarray] | None = None   # (now, catalog_live per slot at now)
        self._free_slots: list[int] = []
        self.by_term: dict[str, dict[str, set[tuple[str, str]]]] = {a: {} for a in CATALOG_TERMS}
        self.item_count = 0
        self._ordered: list[Entry] | None = None   # entries by first_key, rebuilt lazily
        self._disjoint = True
        self._deleted = False

    # -- building ------------------------------------------------------------------------------

    def prepare(self, record: CatalogRecord, raw_z: bytes, *, copy: bool = True) -> Prepared:
        """Compute everything a put needs, without touching what searches read.

        `record.meta.raw` must already be empty (the caller keeps it compressed as `raw_z`)."""
        for doc in record.items:
            upgrade_terms(doc)          # logged or snapshotted before terms were stored
        compact_record(record, copy=copy)
        meta = record.meta
        keyed = sorted(((self.order_key(d, meta), d) for d in record.items), key=lambda kd: kd[0])
        items = [d for _, d in keyed]
        record.items = items
        n = len(items)
        nan = math.nan
        lon = np.array([d.lon if d.lon is not None else nan for d in items], dtype=float)
        lat = np.array([d.lat if d.lat is not None else nan for d in items], dtype=float)
        bad = ~(np.isfinite(lon) & np.isfinite(lat))
        lon[bad] = nan
        lat[bad] = nan
        active = np.array([bool(d.is_active) for d in items], dtype=bool)
        nums = {a: np.array([_num(getattr(d, a)) for d in items], dtype=float) for a in NUMERIC}
        codes = {a: np.array([self._code(a, getattr(d, a)) for d in items], dtype=np.uint16) for a in CODED}
        bits = {a: np.array([self._bitset(a, getattr(d, a)) for d in items], dtype=np.uint64) for a in BITS}
        return Prepared(record=record, raw_z=raw_z, first_key=keyed[0][0] if n else None,
                        last_key=keyed[-1][0] if n else None, offer_end=offer_end(items),
                        lon=lon, lat=lat, active=active, nums=nums, codes=codes, bits=bits)

    def _code(self, attr: str, value: str | None) -> int:
        if value is None:
            return 0
        vocab = self.vocab[attr]
        code = vocab.get(value)
        if code is None:
            if len(vocab) >= _OVERFLOW_CODE - 1:
                return _OVERFLOW_CODE
            code = vocab[sys.intern(value)] = len(vocab) + 1
        return code

    def _bitset(self, attr: str, values: Sequence[str]) -> int:
        out = 0
        vocab = self.vocab[attr]
        for v in values:
            code = vocab.get(v)
            if code is None:
                if len(vocab) >= _MAX_BITS:
                    out |= 1 << 63
                    continue
                code = vocab[sys.intern(v)] = len(vocab)
            out |= 1 << code
        return out

    # -- writing (each call is one synchronous, atomic step) ----------------------------------------

    def put(self, p: Prepared) -> None:
        for _ in self.put_steps(p, len(p.record.items) or 1):
            pass

    def put_steps(self, p: Prepared, slice_items: int = 4096) -> Iterator[None]:
        """`put` as a generator that yields between slices of at most `slice_items` documents, so a
        serving loop applying a huge catalog never stalls for long (docs/decisions.md §24). Between
        slices a search still sees the old catalog: the new documents are linked while not alive, one
        step flips visibility (old dead, new alive), then the old documents are unlinked in slices."""
        meta = p.record.meta
        items = p.record.items
        n = len(items)
        ids = self._alloc(n)
        slot = self._free_slots.pop() if self._free_slots else len(self.entries)
        entry = Entry(slot, p.record, p.raw_z, ids, p.first_key, p.last_key, p.offer_end)
        if slot == len(self.entries):
            self.entries.append(entry)
        else:
            self.entries[slot] = entry
        self._set_slot(slot, meta)
        self.alive[ids] = False
        self.active[ids] = p.active
        self.lon[ids] = p.lon
        self.lat[ids] = p.lat
        self.coslat[ids] = np.cos(p.lat * DEG)
        self.cat[ids] = slot
        self.pos[ids] = np.arange(n, dtype=np.int32)
        for a in NUMERIC:
            self.nums[a][ids] = p.nums[a]
        for a in CODED:
            self.codes[a][ids] = p.codes[a]
        for a in BITS:
            self.bits[a][ids] = p.bits[a]
        docs, entry_of = self.docs, self.entry_of
        id_list, lons, lats = ids.tolist(), p.lon.tolist(), p.lat.tolist()
        window_row = self.windows.add
        for start in range(0, n, slice_items):
            stop = start + slice_items
            rows = []
            for i, d, x, y in zip(id_list[start:stop], items[start:stop], lons[start:stop], lats[start:stop]):
                docs[i] = d
                entry_of[i] = entry
                rows.append(window_row(d.windows, d.daily_windows))
                if x == x:                                   # not NaN
                    c = self._cell(x, y)
                    self.grid.setdefault(c, set()).add(i)
                    self._grid_arrays.pop(c, None)
                for a in POSTED:
                    v = getattr(d, a)
                    if v is not None:
                        _post_add(self.postings[a], v, i)
            self.wrow[ids[start:stop]] = rows
            if stop < n:
                yield
        old = self.catalogs.get(meta.key)
        if old is not None:
            self._unregister(old)
        self.alive[ids] = True
        self.catalogs[meta.key] = entry
        for a in CATALOG_TERMS:
            self.by_term[a].setdefault(getattr(meta, a), set()).add(meta.key)
        self.item_count += n
        self._ordered = None
        if old is not None:
            yield
            yield from self._unlink_steps(old, slice_items)

    def delete(self, key: tuple[str, str]) -> bool:
        for _ in self.delete_steps(key, 1 << 62):
            pass
        return self._deleted

    def delete_steps(self, key: tuple[str, str], slice_items: int = 4096) -> Iterator[None]:
        """`delete` in slices: the catalog disappears from searches at once, its documents are
        unlinked afterwards (`self._deleted` says whether there was one)."""
        entry = self.catalogs.get(key)
        self._deleted = entry is not None
        if entry is None:
            return
        self._unregister(entry)
        self._ordered = None
        yield from self._unlink_steps(entry, slice_items)

    def replace_docs(self, entry: Entry, record: CatalogRecord) -> None:
        """Swap in new document objects whose indexed fields are unchanged (offers were stripped)."""
        for i, d in zip(entry.ids.tolist(), record.items):
            self.docs[i] = d
        entry.record = record
        entry.offer_end = offer_end(record.items)

    def _unregister(self, entry: Entry) -> None:
        """The catalog-level half of a removal (one step): its documents stop being candidates."""
        self.alive[entry.ids] = False
        del self.catalogs[entry.key]
        for a in CATALOG_TERMS:
            keys = self.by_term[a][getattr(entry.meta, a)]
            keys.discard(entry.key)
            if not keys:
                del self.by_term[a][getattr(entry.meta, a)]
        self.entries[entry.slot] = None
        self._free_slots.append(entry.slot)
        self.item_count -= len(entry.ids)
        self._ordered = None

    def _set_slot(self, slot: int, meta: CatalogMeta) -> None:
        if slot >= len(self.slot_active):
            cap = max(slot + 1, 2 * len(self.slot_active), 64)
            self.slot_active = np.concatenate([self.slot_active, np.zeros(cap - len(self.slot_active), bool)])
            self.slot_from = np.concatenate([self.slot_from, np.full(cap - len(self.slot_from), math.nan)])
            self.slot_expires = np.concatenate([self.slot_expires, np.full(cap - len(self.slot_expires), math.nan)])
        self._slot_live = None
        self.slot_active[slot] = bool(meta.is_active)
        self.slot_from[slot] = _num(meta.valid_from)
        self.slot_expires[slot] = _num(meta.expires_at)

    def live_mask(self, ids: np.ndarray, now: float) -> np.ndarray:
        """`cds.core.matching.is_live` for alive documents `ids` at `now`, vectorised. The catalogs' part is
        computed for every slot at once and kept for that `now` (a search asks it a block at a time), unless the
        slots far outnumber the candidates (many small catalogs): then only the candidates' slots are decided."""
        if len(self.slot_active) > 4 * len(ids):
            cats = self.cat[ids]
            return self.active[ids] & catalog_live_mask(self.slot_active[cats], self.slot_from[cats],
                                                        self.slot_expires[cats], now)
        cached = self._slot_live
        if cached is None or cached[0] != now:
            cached = self._slot_live = (now, catalog_live_mask(self.slot_active, self.slot_from, self.slot_expires,
                                                               now))
        return self.active[ids] & cached[1][self.cat[ids]]

    def _unlink_steps(self, entry: Entry, slice_items: int) -> Iterator[None]:
        """The per-document half of a removal (dead documents leave the grid and postings), in slices;
        the ids are reusable only once all are unlinked."""
        ids = entry.ids.tolist()
        lon, lat = self.lon[entry.ids].tolist(), self.lat[entry.ids].tolist()
        rows = self.wrow[entry.ids].tolist()
        self.cat[entry.ids] = -1
        release = self.windows.release
        for start in range(0, len(ids), slice_items):
            if start:
                yield
            stop = start + slice_items
            for i, x, y, r in zip(ids[start:stop], lon[start:stop], lat[start:stop], rows[start:stop]):
                d = self.docs[i]
                assert d is not None
                release(r)
                if x == x:
                    c = self._cell(x, y)
                    cell = self.grid[c]
                    cell.discard(i)
                    self._grid_arrays.pop(c, None)
                    if not cell:
                        del self.grid[c]
                for a in POSTED:
                    v = getattr(d, a)
                    if v is not None:
                        _post_remove(self.postings[a], v, i)
                self.docs[i] = None
                self.entry_of[i] = None
        self._free.extend(ids)

    def _alloc(self, n: int) -> np.ndarray:
        take = min(n, len(self._free))
        reused = self._free[len(self._free) - take:]
        del self._free[len(self._free) - take:]
        start = len(self.docs)
        fresh = n - take
        if fresh:
            self.docs.extend([None] * fresh)
            self.entry_of.extend([None] * fresh)
            self._grow(start + fresh)
        return np.array(reused + list(range(start, start + fresh)), dtype=np.int64)

    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = max(need, self._cap * 2, 1024)

        def grown(a: np.ndarray, fill: Any) -> np.ndarray:
            out = np.full(cap, fill, dtype=a.dtype)
            out[:len(a)] = a
            return out

        self.alive = grown(self.alive, False)
        self.active = grown(self.active, False)
        self.lon, self.lat = grown(self.lon, np.nan), grown(self.lat, np.nan)
        self.coslat = grown(self.coslat, np.nan)
        self.cat, self.pos = grown(self.cat, -1), grown(self.pos, 0)
        self.wrow = grown(self.wrow, 0)
        self.nums = {a: grown(v, np.nan) for a, v in self.nums.items()}
        self.codes = {a: grown(v, 0) for a, v in self.codes.items()}
        self.bits = {a: grown(v, 0) for a, v in self.bits.items()}
        self._cap = cap

    # -- grid (narrowing itself: `indexer.embedded.narrow`) -------------------------------------------

    def _cell(self, lon: float, lat: float) -> int:
        g = self.grid_deg
        ix = int((min(max(lon, -180.0), 180.0) + 180.0) // g)
        iy = int((min(max(lat, -90.0), 90.0) + 90.0) // g)
        return iy * self._nx + ix

    def _cell_array(self, c: int) -> np.ndarray:
        arr = self._grid_arrays.get(c)
        if arr is None:
            cell = self.grid[c]
            arr = self._grid_arrays[c] = np.fromiter(cell, dtype=np.int64, count=len(cell))
        return arr

    def live_ids(self) -> np.ndarray:
        return np.flatnonzero(self.alive[:len(self.docs)]).astype(np.int64)

    # -- no-origin order ----------------------------------------------------------------------------

    def ordered_entries(self) -> tuple[list[Entry], bool]:
        """Catalogs by their first document's key, and whether their key ranges are disjoint
        (then walking them in this order, each in its own order, is the global order)."""
        if self._ordered is None:
            ents = [e for e in self.catalogs.values() if len(e.ids)]
            ents.sort(key=lambda e: e.first_key)
            self._disjoint = all(a.last_key < b.first_key for a, b in zip(ents, ents[1:]))
            self._ordered = ents
        return self._ordered, self._disjoint

    def in_order(self, ids: np.ndarray) -> np.ndarray | None:
        """`ids` sorted by the no-origin order; None when catalog key ranges overlap (caller sorts)."""
        if len(ids) <= 1:              # (a QR or id lookup: nothing to order)
            return ids
        slots = self.cat[ids]
        present = np.unique(slots)
        ents = sorted((self.entries[s] for s in present.tolist()), key=lambda e: e.first_key)
        if any(not a.last_key < b.first_key for a, b in zip(ents, ents[1:])):
            return None
        rank = np.zeros(len(self.entries), dtype=np.int32)
        rank[[e.slot for e in ents]] = np.arange(len(ents), dtype=np.int32)
        return ids[np.lexsort((self.pos[ids], rank[slots]))]

    def sizes(self) -> dict[str, int]:
        """Counts of every internal structure (leak tests, debugging): postings = grid + exact
        postings + catalog-term entries."""
        n = sum(len(s) for s in self.grid.values())
        for post in self.postings.values():
            n += sum(1 if isinstance(v, int) else len(v) for v in post.values())
        for idx in self.by_term.values():
            n += sum(len(v) for v in idx.values())
        return {"catalogs": len(self.catalogs), "items": self.item_count, "postings": n,
                "grid_cells": len(self.grid), "grid_arrays": len(self._grid_arrays),
                "doc_slots": len(self.docs), "live_slots": len(self.docs) - len(self._free),
                "entry_slots": len(self.entries), "window_sets": len(self.windows)}


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _post_add(post: dict[str, Posting], value: str, i: int) -> None:
    cur = post.get(value)
    if cur is None:
        post[value] = i
    elif isinstance(cur, int):
        post[value] = (cur, i)
    elif isinstance(cur, tuple):
        post[value] = cur + (i,) if len(cur) < _SMALL_POSTING else {*cur, i}
    else:
        cur.add(i)


def _post_remove(post: dict[str, Posting], value: str, i: int) -> None:
    cur = post.get(value)
    if cur is None:
        return
    if isinstance(cur, int):
        if cur == i:
            del post[value]
        return
    if isinstance(cur, tuple):
        rest = tuple(j for j in cur if j != i)
    else:
        cur.discard(i)
        if len(cur) > _SMALL_POSTING:
            return
        rest = tuple(cur)
    if len(rest) > 1:
        post[value] = rest
    elif rest:
        post[value] = rest[0]                  # back to the compact single-id form
    else:
        del post[value]
