"""`cds.core.query.Query` -> Elasticsearch query DSL (a bool filter that is a *superset* of the exact matches)
plus the sort, and the paging rules that keep the final, exact answer correct.

Every clause here may let extra candidates through (cds.core.matching has the last word) but must never
drop a true match:
- liveness: catalog `exp > now` (or none), catalog active and started, item active (`matching.is_live`);
- spatial: the filter's bbox, plus a tighter shape: `geo_distance` for radius queries, `geo_shape`
  (on the geo_point) with a widened degree-space buffer for corridors, polygons and areas;
  negated filters (`none`, `disjoint`) are left to the exact check;
- terms/ranges: keyword `terms`, numeric `range` (inclusive, like `matching.pushdowns_pass`);
- text: each analysed query term is a `term` on the keyword field `terms` (the same analyzer made both,
  cds.core.text, so this is the exact test);
- packs: `terms` on `pack`.
- availability: only for the filter's top-level window conjunct (`Query.window`, which every match meets;
  see `_window`): some instant window intersects its interval, or some daily window intersects its local
  times of day. `Query.time_window` alone may come from an OR/NOT branch of the filter, so it is not pushed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

import shapely
from shapely.geometry import MultiPoint, Point, box, mapping as geojson
from shapely.geometry.base import BaseGeometry

from cds.core import geodesy

from cds.core import timeutil
from cds.core.query import Query, SpatialFilter
from cds.core.documents import Hit
from indexer.elastic.mapping import DAY, KEYWORD_FIELDS, NUMERIC_FIELDS, big, instant_range

EPS_DEG = 1e-6                 # > geo_point quantisation (~1e-7 deg) and float noise
DIST_REL = 1e-3                # radius widening: ES and cds.core.spatial use the same sphere; this is slack
DIST_ABS_M = 5.0
SORT_TOL_REL = 1e-6            # |ES sort distance - exact distance| bound, relative ...
SORT_TOL_ABS_M = 1.0           # ... plus absolute (quantised points are off by < 1 cm)
MAX_SHAPE_VERTICES = 2000      # bigger shapes fall back to the bbox only
MAX_SHAPE_LAT = 85.0           # degree-space buffers are used only away from the poles
MAX_POINTS = 64                # MultiPoint radius: one geo_distance per point up to this many
_WORLD = box(-180.0, -90.0, 180.0, 90.0)
_M_PER_DEG = geodesy.M_PER_DEG


@dataclass(slots=True)
class Plan:
    query: dict[str, Any]
    sort: list[Any]
    by_distance: bool
    impossible: bool = False
    filters: list[dict[str, Any]] = field(default_factory=list)

    def _bound(self, last_sort: list[Any]) -> float:
        """Smallest exact distance any doc after `last_sort` can have (inf: only docs without location)."""
        d = float(last_sort[0])
        return d if math.isinf(d) else d - (SORT_TOL_ABS_M + SORT_TOL_REL * d)

    def certain(self, hits: list[Hit], last_sort: list[Any]) -> list[Hit]:
        """The hits no unseen doc can order before."""
        if not self.by_distance:
            return hits   # ES sorts by exactly order_key's ids
        bound = self._bound(last_sort)
        if math.isinf(bound):
            return hits
        return [h for h in hits if h.distance is not None and h.distance < bound]

    def done(self, hits: list[Hit], limit: int, last_sort: list[Any]) -> bool:
        return len(self.certain(hits, last_sort)) >= limit


def live_filters(now: float) -> list[dict[str, Any]]:
    return [
        {"term": {"is_active": True}},
        {"term": {"cat_active": True}},
        {"bool": {"should": [{"range": {"exp": {"gt": now}}}, {"bool": {"must_not": {"exists": {"field": "exp"}}}}],
                  "minimum_should_match": 1}},
        {"bool": {"should": [{"range": {"cat_from": {"lte": now}}},
                             {"bool": {"must_not": {"exists": {"field": "cat_from"}}}}],
                  "minimum_should_match": 1}},
    ]


def _bbox_filter(b: tuple[float, float, float, float]) -> dict[str, Any] | None:
    lo_lon, lo_lat, hi_lon, hi_lat = b
    lo_lon, hi_lon = max(-180.0, lo_lon - EPS_DEG), min(180.0, hi_lon + EPS_DEG)
    lo_lat, hi_lat = max(-90.0, lo_lat - EPS_DEG), min(90.0, hi_lat + EPS_DEG)
    if lo_lon <= -180.0 and hi_lon >= 180.0 and lo_lat <= -90.0 and hi_lat >= 90.0:
        return None
    return {"geo_bounding_box": {"loc": {"top_left": {"lon": lo_lon, "lat": hi_lat},
                                         "bottom_right": {"lon": hi_lon, "lat": lo_lat}}}}


def _dlon(distance_m: float, lat_max: float) -> float:
    """Longitude half-width of a spherical cap of radius distance_m at |lat| <= lat_max (as cds.core.spatial)."""
    delta = distance_m / geodesy.EARTH_R
    ratio = math.sin(delta) / math.cos(math.radians(abs(lat_max)))
    return math.degrees(math.asin(min(1.0, ratio)))


def _grow(geom: BaseGeometry, radius_deg: float, tol: float) -> BaseGeometry:
    """Everything within radius_deg of geom (degree space), as a polygon with few vertices.

    Douglas-Peucker keeps the simplified boundary within `tol` of the original (and topology-preserving
    simplification keeps polygons polygons), so growing the simplified shape by radius + tol covers every
    point within radius of the original, interior included. Buffer arcs are inscribed polygons: the
    factor 1/cos(pi/16) (quad_segs=4) makes them contain the true disc."""
    simple = geom.simplify(tol, preserve_topology=True) if tol > 0 else geom
    grown = simple.buffer((radius_deg + tol) * 1.03 + EPS_DEG, quad_segs=4)
    return shapely.orient_polygons(grown.intersection(_WORLD))


def _shape_query(geom: BaseGeometry, radius_deg: float) -> dict[str, Any] | None:
    """geo_shape `intersects` (on the geo_point) with the grown geometry; None when not worth it."""
    grown = _grow(geom, radius_deg, radius_deg / 4)
    if shapely.get_num_coordinates(grown) > MAX_SHAPE_VERTICES:
        minx, miny, maxx, maxy = geom.bounds
        grown = _grow(geom, radius_deg, max(radius_deg / 4, math.hypot(maxx - minx, maxy - miny) / 500))
    if grown.is_empty or shapely.get_num_coordinates(grown) > MAX_SHAPE_VERTICES:
        return None
    return {"geo_shape": {"loc": {"shape": geojson(grown), "relation": "intersects"}}}


def _spatial(f: SpatialFilter) -> list[dict[str, Any]]:
    if getattr(f, "negate", False) or f.op == "disjoint" or f.bbox is None:
        return []   # unbounded or negated: exact check only
    out: list[dict[str, Any]] = []
    bb = _bbox_filter(f.bbox)
    if bb is not None:
        out.append(bb)
    wraps = f.bbox[0] <= -180.0 and f.bbox[2] >= 180.0   # pole/antimeridian: the bbox is all we trust
    geom = f.geometry
    if f.op == "dwithin":
        d = f.distance_m
        if isinstance(geom, (Point, MultiPoint)):
            pts = [geom] if isinstance(geom, Point) else list(geom.geoms)
            if len(pts) <= MAX_POINTS:
                dist = f"{d * (1 + DIST_REL) + DIST_ABS_M}m"
                clauses = [{"geo_distance": {"distance": dist, "distance_type": "arc",
                                             "loc": {"lon": p.x, "lat": p.y}}} for p in pts]
                out.append(clauses[0] if len(clauses) == 1 else
                           {"bool": {"should": clauses, "minimum_should_match": 1}})
            return out
        minx, miny, maxx, maxy = geom.bounds
        dlat = d / _M_PER_DEG
        lat_max = max(abs(miny), abs(maxy)) + dlat
        if wraps or lat_max > MAX_SHAPE_LAT:
            return out
        dlon = _dlon(d, lat_max)
        shape = _shape_query(geom, math.hypot(dlat, dlon))
    else:
        # within / intersects / contains: the station point lies in or on the geometry
        shape = None if wraps else _shape_query(geom, 0.0)
    if shape is not None:
        out.append(shape)
    return out


def tod_ranges(a: float, b: float, tz: "tzinfo | str | None") -> list[tuple[int, int]] | None:
    """Local times of day (seconds) covered by the instants [a, b]; None = the whole day."""
    if not b - a < DAY:   # also for instants beyond the years datetime covers (no date overflow)
        return None
    ls, le = timeutil.local_seconds(a, tz), timeutil.local_seconds(b, tz)
    days = int(timeutil.wall_seconds(b, tz) // DAY - timeutil.wall_seconds(a, tz) // DAY)
    if days >= 2 or (days == 1 and le >= ls):
        return None
    if days == 0:
        return [(ls, min(DAY, le + 1))]
    return [(ls, DAY), (0, min(DAY, le + 1))]


def _window(tw: tuple[float, float], tz: "tzinfo | str | None") -> dict[str, Any]:
    """Superset of the window predicate's matches (`startTime <= X && endTime >= Y`, overlap or contain):
    both need some window that intersects [min, max] of the query interval."""
    a, b = min(tw), max(tw)
    should: list[dict[str, Any]] = [{"range": {"windows": {**instant_range(a, b), "relation": "intersects"}}}]
    tods = tod_ranges(a, b, tz)
    if tods is None:
        should.append({"exists": {"field": "daily"}})
    else:
        should += [{"range": {"daily": {"gte": lo, "lte": hi, "relation": "intersects"}}} for lo, hi in tods]
    return {"bool": {"should": should, "minimum_should_match": 1}}


def _text(terms: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"term": {"terms": t}} for t in terms]


_NUMERIC = set(NUMERIC_FIELDS)
_KEYWORD = set(KEYWORD_FIELDS)


def _terms(query: Query) -> tuple[list[dict[str, Any]], bool]:
    out: list[dict[str, Any]] = []
    for attr, allowed in query.terms.items():
        if not allowed:
            return out, True
        if attr in _KEYWORD:
            out.append({"terms": {attr: sorted(allowed)}})
    for attr, (lo, hi) in query.ranges.items():
        if attr not in _NUMERIC:
            continue
        if lo is not None and hi is not None and lo > hi:
            return out, True
        rng: dict[str, float] = {}
        if lo is not None:
            rng["gte"] = big(lo)
        if hi is not None:
            rng["lte"] = big(hi)
        out.append({"range": {attr: rng}} if rng else {"exists": {"field": attr}})
    return out, False


def plan(query: Query, now: float, *, current: list[str], tz: "tzinfo | str | None" = None) -> Plan:
    """The ES request for `query` over the visible generations `current` (read once per search); `tz` is
    the network time zone of daily windows."""
    filters: list[dict[str, Any]] = [{"terms": {"cg": current}}, *live_filters(now)]
    for f in query.spatial:
        filters += _spatial(f)
    term_filters, impossible = _terms(query)
    filters += term_filters
    filters += _text(query.text)
    if query.window is not None:
        filters.append(_window((query.window.x, query.window.y), tz))
    if query.packs is not None:
        if not query.packs:
            impossible = True
        filters.append({"terms": {"pack": sorted(query.packs)}})
    if not current:
        impossible = True
    ids = [{"catalog_id": "asc"}, {"bpp_id": "asc"}, {"item_id": "asc"}, {"cg": "asc"}]
    if query.origin is not None:
        lon, lat = query.origin
        sort: list[Any] = [{"_geo_distance": {"loc": {"lon": lon, "lat": lat}, "order": "asc", "unit": "m",
                                              "distance_type": "arc", "ignore_unmapped": False}}, *ids]
    else:
        sort = ids
    return Plan(query={"bool": {"filter": filters}}, sort=sort, by_distance=query.origin is not None,
                impossible=impossible, filters=filters)
