"""The embedded index's search: narrow with the index, decide what can be decided for a block of candidates at
once (numpy), then let `cds.core.matching` have the final word on the rest, one candidate at a time.

Per block, vectorised: the pushdowns (`Narrowing.vector`), liveness (`Index.live_mask`: the item's `is_active`,
its catalog's `catalog_live`), the filter's availability-window conjunct (`Narrowing.window`) and, where that is
sure, the spatial constraints (docs/decisions.md §G). Python then touches only candidates that may match; when
nothing else is left to test (`matching.spatial_decides`) a candidate surely inside (and surely meeting the window
term) is a hit without calling the matcher. Hits are ordered as `matching.select` orders them (its exact
distance, never numpy's; `matching.ranked`).

The search is a generator that yields once `sl.until` (perf_counter) has passed, checked before every candidate
Python tests: `indexer.embedded.store` runs it in slices on the event loop (docs/decisions.md §24).
"""

from __future__ import annotations

import heapq
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterator

import numpy as np

from cds.core import matching, spatialvec
from cds.core.documents import Hit, ItemDoc
from cds.core.spatialvec import half_chord, haversine_a
from cds.core.text import has_terms
from indexer.embedded.index import Index
from indexer.embedded.narrow import Narrowing

if TYPE_CHECKING:
    from cds.core.documents import CatalogMeta
    from cds.core.query import Query

_SCAN_BLOCK = 4096         # docs per vectorised block when walking catalogs in order
_DIST_SLACK = 0.01         # our haversine vs cds.core.matching.distance: stop only beyond this margin
_CLASSIFY_BLOCK = 64       # candidates in the first vectorised spatial classification (few are needed beyond the
                           # limit), at least twice the limit (a route keeps about every other near one: one numpy pass)
_CLASSIFY_MAX = 1024       # ... and at most in any later one

Steps = Generator[None, None, list[Hit]]


class Slice:
    """When the running slice of a search ends (perf_counter); the search pauses at the first candidate it
    reaches after that (so a slice is longer than planned by at most one candidate's test)."""

    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until = 0.0


def search_steps(idx: Index, query: Query, now: float, sl: Slice) -> Steps:
    """The search as a generator (see the module doc); returns the hits."""
    if query.limit <= 0:
        return []
    nar = idx.narrow(query)
    if query.origin is not None:
        return (yield from _nearest(idx, query, now, nar, sl))
    return (yield from _in_order(idx, query, now, nar, sl))


def _checker(idx: Index, query: Query, now: float, nar: Narrowing
             ) -> Callable[[ItemDoc, "CatalogMeta", bool], bool]:
    """A live candidate's test, the query's share of it done once. `inside`: a vectorised test already showed
    the candidate clearly inside every spatial constraint, which is then not tested again in Python."""
    text, posted = query.text, nar.posted_checks
    match = matching.item_matcher(query, now, pushdowns_known=nar.exact, packs_known=nar.packs_known)
    if not text and not posted:
        return match

    def check(doc: ItemDoc, meta: CatalogMeta, inside: bool = False) -> bool:
        # Cheap rejections first (the matcher repeats them, after its costlier spatial test).
        if text and not has_terms(doc.terms, text):
            return False
        for attr, allowed in posted:
            if getattr(doc, attr) not in allowed:
                return False
        return match(doc, meta, inside)
    return check


def _live(idx: Index, nar: Narrowing, ids: np.ndarray, now: float) -> np.ndarray:
    """The live ones among `ids`, less those that surely miss the filter's window term."""
    keep = idx.live_mask(ids, now)
    if nar.window is not None:
        keep &= ~nar.window(ids)[1]
    return ids[keep]


def _nearest(idx: Index, query: Query, now: float, nar: Narrowing, sl: Slice) -> Steps:
    """Evaluate candidates nearest first; stop once no later one can beat the limit-th hit."""
    assert query.origin is not None
    check = _checker(idx, query, now, nar)
    # Inside every spatial constraint (decided vectorised), surely meeting the filter's window term if it has one
    # (decided vectorised, `indexer.embedded.windows`) and nothing else to test: a hit without the matcher.
    decided = (matching.spatial_decides(query, pushdowns_known=nar.exact, packs_known=nar.packs_known,
                                        window_holds=nar.window is not None)
               and not nar.posted_checks)
    dist, metres = matching.distancer(query), matching.metres_from(query.origin)
    docs, entry_of = idx.docs, idx.entry_of
    ids = nar.vector(nar.ids if nar.ids is not None else idx.live_ids())
    # haversine's `a`, not metres: it orders candidates as their distances do, without a square root and an
    # arcsine per candidate (nor a cosine: the index keeps cos(lat)); distances compared with it: `half_chord`
    approx = haversine_a(query.origin[0], query.origin[1], idx.lon[ids], idx.lat[ids], idx.coslat[ids])
    limit = query.limit
    found: list[tuple] = []            # the hits as `matching.ranked` takes them
    worst: list[float] = []            # once there are `limit` hits: max-heap (negated) of the best `limit` distances
    # Clearly inside a radius around the origin (by a margin far above rounding): decided here, vectorised;
    # clearly beyond it, and so is every later candidate (they come in ascending distance): the search ends.
    radius = radius_of(query)
    sure = half_chord(radius * (1 - 1e-9) - 1e-3) if radius is not None else -1.0
    beyond = half_chord(radius * (1 + 1e-9) + 1e-3) if radius is not None else math.inf
    # Other spatial constraints decided vectorised where that is sure (docs/decisions.md §G), a block at a time.
    vec = spatialvec.classifiers(query.spatial) if radius is None and query.spatial else None
    clock = time.perf_counter
    stop = math.inf            # no later candidate (ascending approx) can beat the limit-th hit beyond this `a`
    step = min(max(_CLASSIFY_BLOCK, 2 * limit), _CLASSIFY_MAX)
    for chunk, chunk_d in ascending(ids, approx):
        start = 0
        while start < len(chunk):
            until = start + step if vec is not None else len(chunk)
            part, part_d = chunk[start:until], chunk_d[start:until]
            start = until
            if vec is not None:             # the few near ones first, then larger blocks (fewer numpy calls)
                step = min(2 * step, _CLASSIFY_MAX)
            # Candidates beyond the stop (or the radius) end the search: later ones are farther still.
            # (A NaN approximation, no location, sorts last and cannot beat a finite limit-th hit.)
            cut, whole = min(stop, beyond), len(part)
            end = whole if cut == math.inf else int(np.searchsorted(part_d, cut, side="right"))
            part, part_d = part[:end], part_d[:end]
            keep = idx.live_mask(part, now)
            if vec is None:
                inside = part_d <= sure
            else:
                inside, outside = spatialvec.classify_all(vec, idx.lon[part], idx.lat[part])
                keep &= ~outside
            free = inside if decided else np.zeros(len(part), bool)    # a hit without the matcher
            if nar.window is not None:
                met, missed = nar.window(part)
                keep &= ~missed
                free &= met
            sel = np.flatnonzero(keep)
            # The stop test runs before every candidate: a block-wise test checked up to a block too many.
            for i, d_i, k, f in zip(part[sel].tolist(), part_d[sel].tolist(), inside[sel].tolist(),
                                    free[sel].tolist()):
                if d_i > stop or d_i != d_i and stop < math.inf:
                    return matching.ranked(found, limit)
                if clock() >= sl.until:
                    yield
                doc = docs[i]
                meta = entry_of[i].meta  # type: ignore[union-attr]
                if not f and not check(doc, meta, k):
                    continue
                # (a finite approximation: the document has a location)
                d = metres(doc.lon, doc.lat) if d_i == d_i else dist(doc)
                key = math.inf if d is None else d
                found.append((key, doc.catalog_id, doc.bpp_id, doc.item_id, len(found), doc, meta, d))
                if len(found) < limit:          # no stop before the limit-th hit
                    continue
                if not worst:
                    worst = [-t[0] for t in found]
                    heapq.heapify(worst)
                elif -key > worst[0]:
                    heapq.heapreplace(worst, -key)
                else:
                    continue
                if -worst[0] < math.inf:
                    stop = half_chord(-worst[0] * (1 + _DIST_SLACK) + 1.0)
            if end < whole:
                return matching.ranked(found, limit)
    return matching.ranked(found, limit)


def _in_order(idx: Index, query: Query, now: float, nar: Narrowing, sl: Slice) -> Steps:
    """Without an origin the order is per catalog, then per item: walk it and stop at the limit."""
    if nar.ids is None:
        entries, disjoint = idx.ordered_entries()
        if disjoint:
            return (yield from _walk(idx, query, now, nar, _blocks(entries), sl))
        ordered = None
        ids = _live(idx, nar, nar.vector(idx.live_ids()), now)
    else:
        ids = _live(idx, nar, nar.vector(nar.ids), now)
        ordered = idx.in_order(ids)
    if ordered is None:                # catalogs interleave in the order: check all, then select
        hits = []
        clock = time.perf_counter
        check = _checker(idx, query, now, nar)
        docs, entry_of = idx.docs, idx.entry_of
        for i in ids.tolist():
            doc, meta = docs[i], entry_of[i].meta  # type: ignore[union-attr]
            if check(doc, meta):
                hits.append(Hit(item=doc, catalog=meta))
            if clock() >= sl.until:
                yield
        return matching.select(hits, query.limit)
    return (yield from _walk(idx, query, now, nar, iter([ordered]), sl, filtered=True))


def _walk(idx: Index, query: Query, now: float, nar: Narrowing, blocks: Any, sl: Slice,
          filtered: bool = False) -> Steps:
    hits: list[Hit] = []
    clock = time.perf_counter
    check = _checker(idx, query, now, nar)
    docs, entry_of = idx.docs, idx.entry_of
    for block in blocks:
        for i in (block if filtered else _live(idx, nar, nar.vector(block), now)).tolist():
            doc, meta = docs[i], entry_of[i].meta  # type: ignore[union-attr]
            if check(doc, meta):
                hits.append(Hit(item=doc, catalog=meta))
                if len(hits) >= query.limit:
                    return matching.select(hits, query.limit)
            if clock() >= sl.until:
                yield
    return matching.select(hits, query.limit)


def radius_of(query: Query) -> float | None:
    """The radius when every spatial constraint is "within d metres of the ordering origin" (a radius query),
    else None. Such a constraint is exactly haversine(origin, station) <= d (`cds.core.spatial`)."""
    if not query.spatial or query.origin is None:
        return None
    radius = math.inf
    for f in query.spatial:
        g = f.geometry
        if (f.op != "dwithin" or getattr(f, "negate", False) or g.geom_type != "Point"
                or (g.x, g.y) != query.origin):
            return None
        radius = min(radius, f.distance_m)
    return radius


def ascending(ids: np.ndarray, dist: np.ndarray, first: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of `ids` in ascending `dist` (NaN last) without sorting everything up front."""
    n = len(ids)
    if n <= 4 * first:
        order = np.argsort(dist, kind="stable")
        yield ids[order], dist[order]
        return
    rest = np.arange(n)
    k = first
    while len(rest):
        if len(rest) <= 2 * k:
            order = rest[np.argsort(dist[rest], kind="stable")]
            yield ids[order], dist[order]
            return
        part = np.argpartition(dist[rest], k)
        head, rest = rest[part[:k]], rest[part[k:]]
        head = head[np.argsort(dist[head], kind="stable")]
        yield ids[head], dist[head]
        k *= 2


def _blocks(entries: list[Any]) -> Iterator[np.ndarray]:
    """Doc ids of catalogs in order, concatenated into blocks of about `_SCAN_BLOCK`."""
    buf: list[np.ndarray] = []
    n = 0
    for e in entries:
        buf.append(e.ids)
        n += len(e.ids)
        if n >= _SCAN_BLOCK:
            yield np.concatenate(buf)
            buf, n = [], 0
    if buf:
        yield np.concatenate(buf)
