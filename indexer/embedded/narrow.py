"""Narrowing for the embedded index (`indexer.embedded.index.Index` inherits `Narrower`): pick the most selective
candidate source (the grid cells of a spatial filter, the postings of an exact key, a catalog's documents), then
one vectorised filter applying every pushdown the index's columns decide (docs/decisions.md §G). What is left
to test, and the exact answer, stay with `cds.core.matching` (`indexer.embedded.search`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import numpy as np
import shapely

from cds.core.spatial_testers import segments_of

CODED = ("connector_type", "power_type", "parking_type", "charging_speed", "pack")   # scalar, few distinct values
BITS = ("vehicle_types", "amenities")                                         # list, few distinct values
POSTED = ("item_id", "evse_id", "qr", "station_id", "provider_id")            # scalar, looked up exactly
NUMERIC = ("max_kw", "min_kw")
CATALOG_TERMS = ("bpp_id", "catalog_id")

_OVERFLOW_CODE = 0xFFFF          # a value beyond the code space: never excluded by a filter
_OVERFLOW_BIT = np.uint64(1 << 63)
_MAX_BITS = 63
Posting = Union[int, tuple, set]  # ids of one posted value: one, a few (compact), many (cheap to change)
_M_PER_DEG_LOW = 110_000.0       # below the true ~111.2 km per degree: a conservative conversion
# Occupied cells in a filter's box beyond which they are pruned (`_cells_for`); other geometries: beyond 4
_PRUNE_FROM = {"Point": 64, "LineString": 128, "MultiLineString": 128}


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
    # ids -> (surely meet, surely miss) the filter's `WindowTerm`, one of its conjuncts (`indexer.embedded.windows`)
    window: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None


class Narrower:
    """The query side of `Index`: reads its grid, postings, columns and vocabularies, changes nothing."""

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
        # A point's box loses only its corners (about a fifth of its area) to pruning: for a few cells the numpy
        # setup costs more than the candidates it drops (a 10 km radius: 587 -> 564 candidates, 15 us slower).
        # A short route's box too: its stations lie along it, so pruning kept 77% of 47 occupied cells for ~45 us,
        # more than the dropped candidates cost (docs/decisions.md §G); a long route's thousands of cells need it.
        if len(keys) > _PRUNE_FROM.get(sf.geometry.geom_type, 4):
            keys = self._prune_cells(sf, keys, max(abs(miny), abs(maxy)))
        cached = self._grid_arrays        # (a route's dozens of cells: one method call each cost ~5 us)
        return [a if (a := cached.get(k)) is not None else self._cell_array(k) for k in keys]

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
        elif (geom.geom_type in ("LineString", "MultiLineString")
              and len(k) * (shapely.get_num_coordinates(geom) - 1) <= _PAIRS_IN_NUMPY):
            # A route (the costliest narrowing): the cell's centre within thr + half the cell's diagonal of
            # a segment, planar, without shapely boxes. Every cell within thr is kept (a few more may be).
            # Every (cell, segment) pair is measured: only for few pairs (shapely's indexed test beyond, where
            # thousands of cells times thousands of segments held the loop for 150 ms).
            keep = _near_segments(x0 + g / 2, y0 + g / 2, segments_of(geom), thr + g * math.sqrt(0.5))
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
                         packs_known=query.packs is not None and not self._overflowed("pack"),
                         window=self._window_test(query))

    def _window_test(self, query: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
        term = query.window
        if term is None:
            return None
        return lambda ids: self.windows.meet(self.wrow[ids], term)

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
            # (the overflow code only once the vocabulary is full: before, no document carries it)
            over = [_OVERFLOW_CODE] if self._overflowed(attr) else []
            allowed = np.array([vocab[v] for v in values if v in vocab] + over, dtype=np.uint16)
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


_PAIRS_IN_NUMPY = 65_536    # (cell, segment) pairs measured at once by `_near_segments` (~1 ms)


def _near_segments(x: np.ndarray, y: np.ndarray, segs: list, reach: float) -> np.ndarray:
    """Points within `reach` (planar, degrees) of some segment, segments as ((ax, ay), (bx, by))."""
    if not segs:
        return np.zeros(len(x), bool)
    ax, ay, bx, by = (np.array(c, dtype=np.float64) for c in zip(*((a[0], a[1], b[0], b[1]) for a, b in segs)))
    dx, dy = bx - ax, by - ay
    den = dx * dx + dy * dy
    u, v = x[:, None] - ax, y[:, None] - ay
    t = np.clip((u * dx + v * dy) / np.where(den == 0.0, 1.0, den), 0.0, 1.0)
    ex, ey = u - dx * t, v - dy * t
    return (ex * ex + ey * ey).min(axis=1) <= (reach * (1 + 1e-9)) ** 2


def _inside(lon: np.ndarray, lat: np.ndarray, minx: float, miny: float, maxx: float, maxy: float) -> np.ndarray:
    return (lon >= minx) & (lon <= maxx) & (lat >= miny) & (lat <= maxy)


def _member(values: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """`np.isin`; for a few allowed values their comparisons, which cost less than isin's setup."""
    if not len(allowed):
        return np.zeros(len(values), bool)
    if len(allowed) > 8:
        return np.isin(values, allowed)
    out = values == allowed[0]
    for v in allowed[1:]:
        out |= values == v
    return out


def _as_set(v: Posting) -> set[int] | tuple[int, ...]:
    return (v,) if isinstance(v, int) else v
