"""The single source of truth for "does this item match this query" and for result order.

Storage backends narrow candidates however they like (indexes, pushdowns); the answer is always what
`matches` says, in the order `order_key` gives (docs/decisions.md §S, §8, §20). `brute_force` is the plain
reference evaluation that backends and tests are compared against.
"""

from __future__ import annotations

import math
from datetime import tzinfo
from typing import Callable, Iterable

import numpy as np

from cds.core import geodesy, spatial

from cds.core import timeutil
from cds.core.query import Query
from cds.core.text import has_terms
from cds.core.documents import CatalogMeta, CatalogRecord, Hit, ItemDoc, OfferDoc


def is_live(item: ItemDoc, meta: CatalogMeta, now: float) -> bool:
    """Catalog not expired, active and started; item active."""
    return catalog_live(meta, now) and item.is_active


def catalog_live(meta: CatalogMeta, now: float) -> bool:
    """The catalog's part of `is_live`."""
    if meta.expires_at is not None and now >= meta.expires_at:
        return False
    if not meta.is_active or (meta.valid_from is not None and now < meta.valid_from):
        return False
    return True


def catalog_live_mask(is_active: np.ndarray, valid_from: np.ndarray, expires_at: np.ndarray, now: float
                      ) -> np.ndarray:
    """`catalog_live` for many catalogs at once (NaN stands for None: every comparison with it is false)."""
    return is_active & ~(now >= expires_at) & ~(now < valid_from)


def offer_live(offer: OfferDoc, now: float, tz: "tzinfo | str") -> bool:
    """Active, inside its validity dates and, if it has one, its daily window (network local time)."""
    if not offer.is_active:
        return False
    if offer.valid_from is not None and now < offer.valid_from:
        return False
    if offer.valid_to is not None and now > offer.valid_to:
        return False
    return offer.daily is None or timeutil.in_daily(offer.daily, now, tz)


def live_offers(item: ItemDoc, now: float, tz: "tzinfo | str") -> list[OfferDoc]:
    """The offers shown for this item at `now`."""
    return [o for o in item.offers if offer_live(o, now, tz)]


def _in_range(v: float | None, lo: float | None, hi: float | None) -> bool:
    return v is not None and (lo is None or v >= lo) and (hi is None or v <= hi)


def pushdowns_pass(query: Query, item: ItemDoc) -> bool:
    """The Query's terms/ranges (supersets of the predicate; applied so a Query means the same everywhere)."""
    for attr, allowed in query.terms.items():
        v = getattr(item, attr)
        if isinstance(v, list):
            if allowed.isdisjoint(v):
                return False
        elif v not in allowed:
            return False
    for attr, (lo, hi) in query.ranges.items():
        if not _in_range(getattr(item, attr), lo, hi):
            return False
    return True


def matches(query: Query, item: ItemDoc, meta: CatalogMeta, now: float, *, spatial_known: bool = False,
            pushdowns_known: bool = False) -> bool:
    """Live ∧ every spatial constraint ∧ text ∧ attribute pack ∧ pushdowns ∧ the filter predicate.
    `spatial_known` / `pushdowns_known`: the caller has already established the spatial constraints / the
    Query's terms and ranges exactly (vectorised tests over an index).

    Availability windows restrict only through the filter (they are tested when the request asks about
    time, never otherwise: docs/decisions.md §5).
    """
    return is_live(item, meta, now) and _item_matches(query, item, meta, now, spatial_known, pushdowns_known)


def _item_matches(query: Query, item: ItemDoc, meta: CatalogMeta, now: float, spatial_known: bool,
                  pushdowns_known: bool, packs_known: bool = False) -> bool:
    """`matches` after liveness (`packs_known`: the caller established the attribute pack, vectorised)."""
    if not spatial_known:
        for f in query.spatial:
            if not spatial.contains(f, item.lon, item.lat):
                return False
    if query.text and not has_terms(item.terms, query.text):
        return False
    if query.packs is not None and not packs_known and item.pack not in query.packs:
        return False
    if (query.terms or query.ranges) and not pushdowns_known and not pushdowns_pass(query, item):
        return False
    if query.predicate is None or pushdowns_known and query.predicate_is_pushdowns:
        return True
    return query.predicate(item, meta, now)


def item_matcher(query: Query, now: float, *, pushdowns_known: bool = False, packs_known: bool = False
                 ) -> Callable[[ItemDoc, CatalogMeta, bool], bool]:
    """`matches` for an item already known to be live (a search that decided liveness vectorised, with
    `catalog_live_mask` and the item's `is_active`), as a function of (item, meta, spatial_known)."""
    def match(item: ItemDoc, meta: CatalogMeta, spatial_known: bool = False) -> bool:
        return _item_matches(query, item, meta, now, spatial_known, pushdowns_known, packs_known)
    return match


def spatial_decides(query: Query, *, pushdowns_known: bool = False, packs_known: bool = False,
                    window_holds: bool = False) -> bool:
    """Does a live item inside every spatial constraint match without further tests? (Then a search that
    decided liveness and the spatial constraints need not call the matcher: the checks of `_item_matches`.)
    `window_holds`: the item is known to meet the filter's `WindowTerm` (decided vectorised, `cds.core.timevec`)."""
    return (not query.text and (query.packs is None or packs_known)
            and (not (query.terms or query.ranges) or pushdowns_known)
            and (query.predicate is None or pushdowns_known and (query.predicate_is_pushdowns or window_holds
                                                                 and query.window is not None
                                                                 and query.window.rest_is_pushdowns)))


def distance(query: Query, item: ItemDoc) -> float | None:
    """Metres from the query origin to the station; None without an origin or a location."""
    if query.origin is None or item.lon is None or item.lat is None:
        return None
    return geodesy.haversine_m(query.origin[0], query.origin[1], item.lon, item.lat)


def metres_from(origin: tuple[float, float]) -> Callable[[float, float], float]:
    """`distance` to an item with a location, as a function of its (lon, lat): the same float."""
    return geodesy.haversine_from(origin[0], origin[1])


def distancer(query: Query) -> Callable[[ItemDoc], float | None]:
    """`distance` for one query, the origin's terms computed once (the same floats)."""
    if query.origin is None:
        return lambda item: None
    metres = metres_from(query.origin)

    def dist(item: ItemDoc) -> float | None:
        lon, lat = item.lon, item.lat
        return None if lon is None or lat is None else metres(lon, lat)
    return dist


def order_key(hit: Hit, with_distance: bool | None = None) -> tuple:
    """(distance, catalog_id, bpp_id, item_id) when ordering by distance, else (catalog_id, bpp_id, item_id).

    `with_distance` defaults to "this hit has a distance"; `select` passes one value for a whole list
    so that keys stay comparable (a hit without a location then sorts last).
    """
    if with_distance is None:
        with_distance = hit.distance is not None
    return _distance_key(hit) if with_distance else _ids_key(hit)


def _ids_key(hit: Hit) -> tuple:
    item = hit.item
    return (item.catalog_id, item.bpp_id, item.item_id)


def _distance_key(hit: Hit) -> tuple:
    item, d = hit.item, hit.distance
    return (math.inf if d is None else d, item.catalog_id, item.bpp_id, item.item_id)


def select(hits: Iterable[Hit], limit: int) -> list[Hit]:
    """The first `limit` hits by `order_key` (docs/decisions.md §20: cap the whole reply, then group)."""
    hits = list(hits)
    with_distance = any(h.distance is not None for h in hits)
    hits.sort(key=_distance_key if with_distance else _ids_key)
    return hits[:max(0, limit)]


def ranked(found: list[tuple], limit: int) -> list[Hit]:
    """`select` for hits given as tuples (distance or inf, catalog_id, bpp_id, item_id, n, item, catalog,
    distance), n their order of arrival: the same hits in the same order (`_distance_key`, ties in arrival order:
    a hit without a location sorts last, as `select` orders it), without a key call per hit (a search collects
    its hits so, and builds a `Hit` only for those it returns). Sorts `found` in place."""
    found.sort()
    return [Hit(item=t[5], catalog=t[6], distance=t[7]) for t in found[:max(0, limit)]]


def brute_force(query: Query, records: Iterable[CatalogRecord], now: float) -> list[Hit]:
    """Reference evaluation: scan everything, keep what `matches`, order and cap."""
    hits = [
        Hit(item=item, catalog=rec.meta, distance=distance(query, item))
        for rec in records
        for item in rec.items
        if matches(query, item, rec.meta, now)
    ]
    return select(hits, query.limit)
