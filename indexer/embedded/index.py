"""In-memory index of the embedded backend: documents plus the structures that narrow a query to
a small candidate set. Exact matching and ordering stay with `cds.core.matching` (see `store.py`).

Layout (memory matters: 1M connectors must fit in a few GB):
- `docs[id]` holds the ItemDoc itself (strings and numbers interned or pooled, offers and equal lists shared
  per catalog, item and offer JSON packed: `indexer.embedded.compact`, docs/decisions.md §P); ids are reused.
- numpy columns per doc id: alive, active (the item's `is_active`), lon/lat, max_kw/min_kw, catalog slot and
  position inside the catalog's order, a uint16 code for low-cardinality keyword fields and a uint64 bit set for
  low-cardinality list fields. Range, bbox and keyword filters run vectorised over candidate ids.
- a grid of `grid_deg` cells (dict cell -> set of ids) for spatial narrowing, and exact postings
  (value -> id, tuple or set of ids) for the high-cardinality keys looked up by QR/item/EVSE id.
- per catalog an `Entry` with its doc ids in no-origin order, so an unnarrowed query can stop
  after `limit` matches instead of scanning everything; per catalog slot the fields of its liveness
  (`cds.core.matching.catalog_live_mask`), so a search decides liveness for a block of candidates at once.

Every structure is changed only by `put`/`delete`/`purge`, each one synchronous step: a search
(also synchronous) sees a catalog entirely old or entirely new.
"""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np
import shapely

from cds.core.documents import CatalogMeta, CatalogRecord, ItemDoc, upgrade_terms
from cds.core.matching import catalog_live_mask
from indexer.embedded.compact import compact_record

CODED = ("connector_type", "power_type", "parking_type", "charging_speed", "pack")   # scalar, few distinct values
BITS = ("vehicle_types", "amenities")                                         # list, few distinct values
POSTED = ("item_id", "evse_id", "qr", "station_id", "provider_id")            # scalar, looked up exactly
NUMERIC = ("max_kw", "min_kw")
CATALOG_TERMS = ("bpp_id", "catalog_id")

_OVERFLOW_CODE = 0xFFFF          # a value beyond the code space: never excluded by a filter
_OVERFLOW_BIT = np.uint64(1 << 63)
_MAX_BITS = 63
_SMALL_POSTING = 8               # up to this many ids a posting is a tuple (a set costs 4x the memory)
Posting = Union[int, tuple, set]  # ids of one posted value: one, a few (compact), many (cheap to change)
_M_PER_DEG_LOW = 110_000.0       # below the true ~111.2 km per degree: a conservative conversion


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


@dataclass
class Narrowing:
    """Candidate ids (after vectorised filters) plus the checks left for Python."""

    ids: np.ndarray | None            # None: no narrowing source, every live doc is a candidate
    vector: Callable[[np.ndarray], np.ndarray]                 # ids -> ids passing every pushdown
    posted_checks: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    # `vector` and `posted_checks` together decide every term and range of the Query exactly (no value of a
    # tested attribute fell outside its vocabulary), so the per-candidate match may skip them (docs/decisions.md §G)
    exact: bool = False
    # `vector` decided the Query's attribute packs exactly (the matcher may skip them)
    packs_known: bool = False


class Index:
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
        self.cat = np.zeros(0, np.int32)
        self.pos = np.zeros(0, np.int32)
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
        for start in range(0, n, slice_items):
            stop = start + slice_items
            for i, d, x, y in zip(id_list[start:stop], items[start:stop], lons[start:stop], lats[start:stop]):
                docs[i] = d
                entry_of[i] = entry
                if x == x:                                   # not NaN
                    c = self._cell(x, y)
                    self.grid.setdefault(c, set()).add(i)
                    self._grid_arrays.pop(c, None)
                for a in POSTED:
                    v = getattr(d, a)
                    if v is not None:
                        _post_add(self.postings[a], v, i)
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
        self.slot_active[slot] = bool(meta.is_active)
        self.slot_from[slot] = _num(meta.valid_from)
        self.slot_expires[slot] = _num(meta.expires_at)

    def live_mask(self, ids: np.ndarray, now: float) -> np.ndarray:
        """`cds.core.matching.is_live` for alive documents `ids` at `now`, vectorised."""
        slots = self.cat[ids]
        return self.active[ids] & catalog_live_mask(self.slot_active[slots], self.slot_from[slots],
                                                    self.slot_expires[slots], now)

    def _unlink_steps(self, entry: Entry, slice_items: int) -> Iterator[None]:
        """The per-document half of a removal (dead documents leave the grid and postings), in slices;
        the ids are reusable only once all are unlinked."""
        ids = entry.ids.tolist()
        lon, lat = self.lon[entry.ids].tolist(), self.lat[entry.ids].tolist()
        self.cat[entry.ids] = -1
        for start in range(0, len(ids), slice_items):
            if start:
                yield
            stop = start + slice_items
            for i, x, y in zip(ids[start:stop], lon[start:stop], lat[start:stop]):
                d = self.docs[i]
                assert d is not None
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
        self.cat, self.pos = grown(self.cat, -1), grown(self.pos, 0)
        self.nums = {a: grown(v, np.nan) for a, v in self.nums.items()}
        self.codes = {a: grown(v, 0) for a, v in self.codes.items()}
        self.bits = {a: grown(v, 0) for a, v in self.bits.items()}
        self._cap = cap

    # -- narrowing ------------------------------------------------------------------------------------

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

    def _cells_for(self, sf: Any) -> list[np.ndarray] | None:
        """Grid cells that can hold a match of one spatial filter; None when the grid cannot help."""
        minx, miny, maxx, maxy = sf.bbox
        if not all(map(math.isfinite, sf.bbox)) or minx > maxx or miny > maxy:
            return None
        c0, c1 = self._cell(minx, miny), self._cell(maxx, maxy)
        ix0, iy0, ix1, iy1 = c0 % self._nx, c0 // self._nx, c1 % self._nx, c1 // self._nx
        nx = ix1 - ix0 + 1
        if nx * (iy1 - iy0 + 1) <= len(self.grid):
            keys = [k for iy in range(iy0, iy1 + 1) for k in range(iy * self._nx + ix0, iy * self._nx + ix0 + nx)
                    if k in self.grid]
        else:          # a huge box: walking the occupied cells is cheaper than walking the box
            keys = [k for k in self.grid if ix0 <= k % self._nx <= ix1 and iy0 <= k // self._nx <= iy1]
        if len(keys) > 4:
            keys = self._prune_cells(sf, keys, max(abs(miny), abs(maxy)))
        return [self._cell_array(k) for k in keys]

    def _prune_cells(self, sf: Any, keys: list[int], lat_max: float) -> list[int]:
        """Drop cells whose box lies farther from the filter geometry than any match can be.

        Degrees are converted with a conservative bound (a lon/lat step of e degrees is at least
        e * 110 km * cos(lat_max) on the ground), so a kept superset never loses a match.
        """
        if sf.op not in ("dwithin", "within", "intersects") or sf.distance_m > 300_000:
            return keys
        lat_max = lat_max + 0.5
        if lat_max >= 80:
            return keys
        thr = 1e-9
        if sf.distance_m > 0:
            thr += sf.distance_m / (_M_PER_DEG_LOW * math.cos(math.radians(lat_max))) * 1.02
        k = np.asarray(keys, dtype=np.int64)
        g = self.grid_deg
        x0 = (k % self._nx) * g - 180.0
        y0 = (k // self._nx) * g - 90.0
        geom = sf.geometry
        if geom.geom_type == "Point":
            # A point's planar distance to each box, without building shapely boxes (the common radius query)
            dx = np.maximum(np.maximum(x0 - geom.x, geom.x - (x0 + g)), 0.0)
            dy = np.maximum(np.maximum(y0 - geom.y, geom.y - (y0 + g)), 0.0)
            keep = np.hypot(dx, dy) <= thr
        else:
            keep = shapely.dwithin(shapely.box(x0, y0, x0 + g, y0 + g), geom, thr)
        return k[keep].tolist()

    def narrow(self, query: Any) -> Narrowing:
        """Pick the most selective candidate source, then filter it with every vectorisable pushdown."""
        sources: list[tuple[int, str, Any, str | None]] = []   # (size, kind, data, POSTED attr)
        for sf in query.spatial:
            if sf.bbox is not None:
                cells = self._cells_for(sf)
                if cells is not None:
                    sources.append((sum(map(len, cells)), "arrays", cells, None))
        for attr, values in query.terms.items():
            if attr in POSTED:
                post = self.postings[attr]
                sets = [_as_set(post[v]) for v in values if v in post]
                sources.append((sum(map(len, sets)), "sets", sets, attr))
            elif attr in CATALOG_TERMS:
                index = self.by_term[attr]
                arrays = [self.catalogs[k].ids for v in values for k in index.get(v, ())]
                sources.append((sum(map(len, arrays)), "arrays", arrays, None))
        ids: np.ndarray | None = None
        used_attr: str | None = None
        if sources:
            size, kind, data, used_attr = min(sources, key=lambda s: s[0])
            if size > max(1024, self.item_count // 4):  # a vectorised pass over all docs is cheaper
                used_attr = None
            elif kind == "sets":
                ids = np.fromiter(itertools.chain.from_iterable(data), dtype=np.int64, count=size)
            else:
                ids = np.concatenate(data) if data else np.zeros(0, np.int64)
        # Exact keys not used as the source are checked per candidate (cheap: few candidates remain).
        posted = [(a, v) for a, v in query.terms.items() if a in POSTED and a != used_attr]
        return Narrowing(ids=ids, posted_checks=posted, vector=self._vector_filter(query), exact=self._exact(query),
                         packs_known=query.packs is not None and not self._overflowed("pack"))

    def _overflowed(self, attr: str) -> bool:
        """Some value of this coded attribute may carry the overflow code (never excluded by a filter)."""
        return len(self.vocab[attr]) >= _OVERFLOW_CODE - 1

    def _exact(self, query: Any) -> bool:
        """Do the vectorised tests and posted checks decide every term and range of `query` exactly?"""
        for attr in query.terms:
            if attr in CODED:
                if self._overflowed(attr):
                    return False
            elif attr in BITS:
                if len(self.vocab[attr]) >= _MAX_BITS:              # some list may carry the overflow bit
                    return False
            elif attr not in POSTED:      # catalog terms are indexed from the catalog's meta, tested on the item
                return False
        return all(attr in NUMERIC for attr in query.ranges)

    def _vector_filter(self, query: Any) -> Callable[[np.ndarray], np.ndarray]:
        """Build one function applying every bbox, keyword-code, bit-set, range and catalog pushdown."""
        tests: list[Callable[[np.ndarray], np.ndarray]] = []
        coded = [(a, v) for a, v in query.terms.items() if a in CODED]
        if query.packs is not None:       # `cds.core.matching`: the item's pack is one of them
            coded.append(("pack", query.packs))
        for attr, values in coded:
            vocab = self.vocab[attr]
            allowed = np.array([vocab[v] for v in values if v in vocab] + [_OVERFLOW_CODE], dtype=np.uint16)
            tests.append(lambda i, col=self.codes[attr], ok=allowed: _member(col[i], ok))
        for attr, values in query.terms.items():
            if attr in BITS:
                vocab = self.vocab[attr]
                mask = _OVERFLOW_BIT
                for v in values:
                    if v in vocab:
                        mask |= np.uint64(1 << vocab[v])
                tests.append(lambda i, col=self.bits[attr], m=mask: (col[i] & m) != 0)
            elif attr in CATALOG_TERMS:
                slots = [self.catalogs[k].slot for v in values for k in self.by_term[attr].get(v, ())]
                tests.append(lambda i, ok=np.array(slots, dtype=np.int32): _member(self.cat[i], ok))
        for attr, (lo, hi) in query.ranges.items():
            if attr in NUMERIC:
                col = self.nums[attr]
                if lo is not None:
                    tests.append(lambda i, col=col, lo=lo: col[i] >= lo)
                if hi is not None:
                    tests.append(lambda i, col=col, hi=hi: col[i] <= hi)
                if lo is None and hi is None:       # an open range still needs a value (matching._in_range)
                    tests.append(lambda i, col=col: ~np.isnan(col[i]))

        # The boxes last: candidates from grid cells mostly pass them, and each test reads only what is left.
        for sf in query.spatial:
            if sf.bbox is not None and all(map(math.isfinite, sf.bbox)):
                minx, miny, maxx, maxy = sf.bbox
                tests.append(lambda i, a=minx, b=miny, c=maxx, d=maxy: _inside(self.lon[i], self.lat[i], a, b, c, d))

        def apply(ids: np.ndarray) -> np.ndarray:
            ids = ids[self.alive[ids]]
            for t in tests:
                if not len(ids):
                    break
                ids = ids[t(ids)]
            return ids
        return apply

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
                "entry_slots": len(self.entries)}


def _inside(lon: np.ndarray, lat: np.ndarray, minx: float, miny: float, maxx: float, maxy: float) -> np.ndarray:
    return (lon >= minx) & (lon <= maxx) & (lat >= miny) & (lat <= maxy)


def _member(values: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """`np.isin`; for a few allowed values their comparisons, which cost less than isin's setup."""
    if len(allowed) > 8 or not len(allowed):
        return np.isin(values, allowed)
    out = values == allowed[0]
    for v in allowed[1:]:
        out |= values == v
    return out


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _as_set(v: Posting) -> set[int] | tuple[int, ...]:
    return (v,) if isinstance(v, int) else v


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
