"""Spatial constraints of a discover request: validation, exact tests and bounding boxes.

Every spatial target resolves to the item's one station location (docs/decisions.md §S), so a constraint is a test of
a single lon/lat point against the request geometry.

Distances are geodesic on a sphere of radius 6,371,008.8 m (the IUGG mean radius; within 0.5% of the
ellipsoid everywhere):
- point to point: haversine;
- point to a line segment (route corridors, polygon edges): the closest point of the segment is found in
  an equirectangular projection centred on the query point (lon/lat straight lines stay straight there,
  so the segment shape is exact; only the local scale is approximated, by well under 0.1% within 50 km of
  the point at India's latitudes), then the distance to that closest point is computed with haversine.
  Segments are straight in lon/lat, as in GeoJSON/PostGIS geometry.
Speed: a SpatialFilter built here carries a precomputed tester; radius tests are pure Python (a bbox
rejection, then haversine with precomputed cos(lat)), route/polygon tests query an STRtree of the
segments' distance-widened boxes so only nearby segments are measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable

import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon
from shapely.errors import ShapelyError
from shapely.geometry.base import BaseGeometry

from cds.core import budget
from cds.core.errors import SCH_SCHEMA_VALIDATION_FAILED, SCH_TYPE_NOT_SUPPORTED, BecknError, schema_error
from cds.core.jsonpath import _Parser  # targets use the filter's path grammar and vocabulary
from cds.core.jsonpath_ast import Index, Name, Wild
from cds.core.query import SpatialFilter

EARTH_R = 6_371_008.8
MAX_DISTANCE_M = 2_000_000.0
MAX_VERTICES = 10_000     # default of CDS_MAX_GEOMETRY_VERTICES (see GeometryLimits)
MAX_REPAIR_CROSSINGS = 64  # default of CDS_MAX_REPAIR_CROSSINGS
ROUTE_SIMPLIFY_M = 1.0    # default of CDS_ROUTE_SIMPLIFY_M
MAX_SPATIAL = 8           # constraints per request
_DEG = math.pi / 180.0
_M_PER_DEG = EARTH_R * _DEG

GEOMETRY_TYPES = ("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon")
# op (lower case, without "s_") -> what we test
OPS = {"dwithin", "within", "intersects", "contains", "disjoint"}
# Names that denote a location inside an item (after prefix stripping); any target ending in one of
# them (optionally followed by geo/coordinates) resolves to the station location.
_LOCATION_NAMES = {"serviceLocation", "availableAt", "location", "locations", "geo", "gps", "stationLocation"}
_LOCATION_TAIL = {"geo", "coordinates", "gps"}


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = lat1 * _DEG, lat2 * _DEG
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin((lon2 - lon1) * _DEG / 2) ** 2
    return 2 * EARTH_R * math.asin(min(1.0, math.sqrt(a)))


def haversine_from(lon1: float, lat1: float) -> Callable[[float, float], float]:
    """`haversine_m` from a fixed first point, its terms computed once: the same float, operation for
    operation (a search measures many stations from one origin; hits are ordered by this exact value)."""
    p1, c1 = lat1 * _DEG, math.cos(lat1 * _DEG)
    sin, cos, asin, sqrt = math.sin, math.cos, math.asin, math.sqrt

    def from_origin(lon2: float, lat2: float) -> float:
        p2 = lat2 * _DEG
        a = sin((p2 - p1) / 2) ** 2 + c1 * cos(p2) * sin((lon2 - lon1) * _DEG / 2) ** 2
        return 2 * EARTH_R * asin(min(1.0, sqrt(a)))
    return from_origin


def _wrap_dlon(d: float) -> float:
    if d > 180.0:
        return d - 360.0
    if d < -180.0:
        return d + 360.0
    return d


def segment_distance_m(lon: float, lat: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    """Geodesic distance (m) from a point to the lon/lat-straight segment a-b (see module doc)."""
    k = math.cos(lat * _DEG)
    ax, ay = _wrap_dlon(a[0] - lon) * k, a[1] - lat
    bx, by = _wrap_dlon(b[0] - lon) * k, b[1] - lat
    dx, dy = bx - ax, by - ay
    den = dx * dx + dy * dy
    t = 0.0 if den == 0.0 else max(0.0, min(1.0, -(ax * dx + ay * dy) / den))
    return haversine_m(lon, lat, a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def _dlon_for(distance_m: float, lat_max: float) -> float:
    """Longitude half-width (degrees) of the cap of radius `distance_m` around any point at latitude
    |lat| <= lat_max: asin(sin(d/R) / cos(lat)) is exact for a spherical cap and grows with |lat|.
    360 when the cap reaches a pole."""
    delta = distance_m / EARTH_R
    if abs(lat_max) * _DEG + delta >= 89.99 * _DEG:
        return 360.0
    ratio = math.sin(delta) / math.cos(abs(lat_max) * _DEG)
    return math.degrees(math.asin(min(1.0, ratio))) * (1 + 1e-9) + 1e-9


def _bbox(geom: BaseGeometry, distance_m: float) -> tuple[float, float, float, float]:
    """A lon/lat box holding every point within `distance_m` of the geometry (never too small)."""
    minx, miny, maxx, maxy = geom.bounds
    dlat = distance_m / _M_PER_DEG * (1 + 1e-9) + 1e-9
    dlon = _dlon_for(distance_m, max(abs(miny), abs(maxy)))
    lo_lat, hi_lat = max(-90.0, miny - dlat), min(90.0, maxy + dlat)
    lo_lon, hi_lon = minx - dlon, maxx + dlon
    if dlon >= 360.0 or lo_lon < -180.0 or hi_lon > 180.0:  # reaches a pole or wraps the antimeridian
        return (-180.0, lo_lat, 180.0, hi_lat)
    return (lo_lon, lo_lat, hi_lon, hi_lat)


# --- validation and bounded cost (docs/decisions.md §24) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeometryLimits:
    """What one request's geometries may cost (settings CDS_MAX_GEOMETRY_VERTICES, CDS_MAX_REPAIR_CROSSINGS,
    CDS_ROUTE_SIMPLIFY_M).

    - `max_vertices`: positions of any one geometry as sent (counted while reading, before anything is built),
      and vertices of all the request's geometries together *as computed*: after a repair (which can multiply
      them) and after route simplification.
    - `max_repair_crossings`: an invalid (self-intersecting, overlapping) polygon is repaired only when its
      rings cross at most this many times; the count is taken cheaply before any repair (a repair's cost grows
      much faster than its crossings: a 151-point star crosses itself ~11,000 times and takes GEOS ~30 s).
    - `route_simplify_m`: when the request's vertices exceed `max_vertices`, its routes (LineStrings) are
      simplified with this tolerance (Douglas-Peucker, metres; 0: never) before the total is judged.
    """

    max_vertices: int = MAX_VERTICES
    max_repair_crossings: int = MAX_REPAIR_CROSSINGS
    route_simplify_m: float = ROUTE_SIMPLIFY_M
    # segment pairs whose boxes overlap that the crossing count may test (a bound on the check itself)
    max_crossing_pairs: int = 2_000_000

    @classmethod
    def of(cls, settings: Any) -> "GeometryLimits":
        """From the service settings (anything with the three attributes; defaults for what is missing)."""
        return cls(max_vertices=getattr(settings, "max_geometry_vertices", MAX_VERTICES),
                   max_repair_crossings=getattr(settings, "max_repair_crossings", MAX_REPAIR_CROSSINGS),
                   route_simplify_m=getattr(settings, "route_simplify_m", ROUTE_SIMPLIFY_M))


DEFAULT_LIMITS = GeometryLimits()




def _bad(msg: str, code: str = SCH_SCHEMA_VALIDATION_FAILED) -> BecknError:
    return schema_error(msg, "message.spatial", code)


def _position(p: Any, counter: list[int]) -> tuple[float, float]:
    if not isinstance(p, (list, tuple)) or not 2 <= len(p) <= 3:
        raise _bad("a GeoJSON position must be [longitude, latitude]")
    lon, lat = p[0], p[1]
    for v in (lon, lat):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or isinstance(v, float) and not math.isfinite(v):
            raise _bad("GeoJSON coordinates must be finite numbers")
    if not -180.0 <= lon <= 180.0 or not -90.0 <= lat <= 90.0:
        raise _bad(f"coordinate [{lon}, {lat}] out of range: GeoJSON order is [longitude, latitude]")
    counter[0] += 1
    if counter[0] > counter[1]:
        raise _bad(f"geometry has more than {counter[1]} vertices (CDS_MAX_GEOMETRY_VERTICES)")
    return float(lon), float(lat)


def _positions(ps: Any, counter: list[int], minimum: int, what: str) -> list[tuple[float, float]]:
    if not isinstance(ps, (list, tuple)) or len(ps) < minimum:
        raise _bad(f"a {what} needs at least {minimum} positions")
    return [_position(p, counter) for p in ps]


def _ring_list(rings: Any, counter: list[int]) -> list[list[tuple[float, float]]]:
    if not isinstance(rings, (list, tuple)) or not rings:
        raise _bad("a Polygon needs at least one linear ring")
    out = []
    for r in rings:
        ring = _positions(r, counter, 4, "Polygon ring")
        if ring[0] != ring[-1]:
            raise _bad("a Polygon ring must be closed (first position equal to the last)")
        out.append(ring)
    return out


def parse_geometry(g: Any, limits: GeometryLimits = DEFAULT_LIMITS) -> BaseGeometry:
    """Validate a GeoJSON geometry (bounded) and build the shapely geometry; an invalid one is repaired
    when that is cheap (see `GeometryLimits`), else refused."""
    if not isinstance(g, dict):
        raise _bad("spatial geometry must be a GeoJSON object")
    gtype, coords = g.get("type"), g.get("coordinates")
    if gtype not in GEOMETRY_TYPES:
        raise _bad(f"geometry type {gtype!r} is not supported (use one of {', '.join(GEOMETRY_TYPES)})",
                   SCH_TYPE_NOT_SUPPORTED)
    n = [0, limits.max_vertices]

    def many(kind: str) -> list[Any]:
        if not isinstance(coords, (list, tuple)) or not coords:
            raise _bad(f"a {kind} needs at least one part")
        if len(coords) > limits.max_vertices:
            raise _bad(f"geometry has more than {limits.max_vertices} parts (CDS_MAX_GEOMETRY_VERTICES)")
        return list(coords)

    if gtype == "Point":
        geom: BaseGeometry = Point(_position(coords, n))
    elif gtype == "LineString":
        geom = LineString(_positions(coords, n, 2, "LineString"))
    elif gtype == "Polygon":
        rings = _ring_list(coords, n)
        geom = Polygon(rings[0], rings[1:])
    elif gtype == "MultiPoint":
        geom = MultiPoint([_position(p, n) for p in many("MultiPoint")])
    elif gtype == "MultiLineString":
        geom = MultiLineString([_positions(ls, n, 2, "LineString") for ls in many("MultiLineString")])
    else:
        polys = [_ring_list(p, n) for p in many("MultiPolygon")]
        geom = MultiPolygon([(rs[0], rs[1:]) for rs in polys])
    if gtype != "Point" and not shapely.is_valid(geom):  # cheap (GEOS stops at the first problem); a point
        # of finite coordinates is always valid
        geom = _repair(geom, limits)
    return geom


def _repair(geom: BaseGeometry, limits: GeometryLimits) -> BaseGeometry:
    """make_valid, only after a cheap count of the rings' crossings shows the repair is cheap too."""
    crossings = count_crossings(geom, limits.max_repair_crossings, limits.max_crossing_pairs)
    if crossings > limits.max_repair_crossings:
        raise _bad(f"geometry is not valid (its edges cross each other) and crosses itself more than "
                   f"{limits.max_repair_crossings} times (CDS_MAX_REPAIR_CROSSINGS): send a simple polygon")
    budget.check()
    try:
        repaired = shapely.make_valid(geom)  # self-intersecting rings etc.: repair rather than refuse
    except ShapelyError as e:
        raise _bad(f"geometry is not valid and cannot be repaired ({str(e)[:120]})") from None
    if repaired.is_empty:
        raise _bad("geometry is empty once repaired (a polygon without area)")
    return repaired


def _linework(geom: BaseGeometry) -> list[BaseGeometry]:
    out: list[BaseGeometry] = []
    for part in shapely.get_parts(geom).tolist():
        if isinstance(part, Polygon):
            out.extend(shapely.get_rings(part).tolist())
        elif isinstance(part, LineString):
            out.append(part)
    return out


def count_crossings(geom: BaseGeometry, cap: int, max_pairs: int = 2_000_000) -> int:
    """How many pairs of non-adjacent edges of `geom` touch or cross (stops counting once past `cap`).

    Vectorised: the edges go into an STRtree and are queried in chunks, so the work is bounded by the pairs of
    edges whose boxes overlap; past `max_pairs` such pairs the geometry is refused as too costly to check.
    """
    coords, idx = shapely.get_coordinates(_linework(geom), return_index=True)
    if len(coords) < 2:
        return 0
    same = idx[1:] == idx[:-1]
    a, b = coords[:-1][same], coords[1:][same]
    line_of = idx[:-1][same]
    n = len(a)
    if n < 3:
        return 0
    seq = np.arange(n)
    first = np.full(int(idx.max()) + 1, n, dtype=np.int64)
    last = np.full(int(idx.max()) + 1, -1, dtype=np.int64)
    np.minimum.at(first, line_of, seq)
    np.maximum.at(last, line_of, seq)
    segs = shapely.linestrings(np.stack([a, b], axis=1))
    tree = shapely.STRtree(segs)
    count = pairs = 0
    chunk = max(1, min(256, 200_000 // n))
    for start in range(0, n, chunk):
        budget.check()
        boxes = tree.query(segs[start:start + chunk])
        pairs += boxes.shape[1]
        if pairs > max_pairs:
            raise _bad(f"geometry is not valid and too intricate to check for a repair (more than {max_pairs} "
                       "pairs of overlapping edges): send a simple polygon")
        left, right = boxes[0] + start, boxes[1]
        keep = right > left
        left, right = left[keep], right[keep]
        same_line = line_of[left] == line_of[right]
        adjacent = same_line & ((right == left + 1) | ((left == first[line_of[left]]) & (right == last[line_of[left]])))
        left, right = left[~adjacent], right[~adjacent]
        if len(left):
            count += int(np.count_nonzero(shapely.intersects(segs[left], segs[right])))
            if count > cap:
                return count
    return count


def vertex_count(geom: BaseGeometry) -> int:
    return int(shapely.get_num_coordinates(geom))


def simplify_route(geom: BaseGeometry, tolerance_m: float) -> BaseGeometry:
    """A LineString/MultiLineString with fewer vertices, every point within `tolerance_m` of the original
    (Douglas-Peucker in degrees of latitude, the longest degree: never further than the tolerance)."""
    if tolerance_m <= 0 or not isinstance(geom, (LineString, MultiLineString)):
        return geom
    out = shapely.simplify(geom, tolerance_m / _M_PER_DEG, preserve_topology=False)
    return geom if out.is_empty else out


def check_target(target: Any) -> None:
    """Every target form in the wild names the item's location; anything else is refused."""
    if not isinstance(target, str) or not target.strip() or len(target) > 512:
        raise _bad("spatial target must be a non-empty JSONPath string")
    _check_target_text(target)


@lru_cache(maxsize=256)
def _check_target_text(target: str) -> None:
    """Accepted target spellings are remembered (a handful recur in every request; a refusal raises and is not
    cached): parsing one costs more than the rest of a radius plan (docs/decisions.md §G)."""
    text = target.strip()
    p = _Parser(text if text[0] in "$@" else "$." + text)
    try:
        p.i = 1
        segs = p.segments()
        p.ws()
        if p.i != len(p.s):
            raise p.fail("unexpected text")
    except BecknError:
        raise _bad(f"spatial target {target!r} is not a valid path") from None
    names = [s.name for s in segs if isinstance(s, Name)]
    if any(not isinstance(s, (Name, Wild, Index)) for s in segs):
        names = []
    while names and names[-1] in _LOCATION_TAIL and len(names) > 1:
        names.pop()
    if not names or names[-1] not in _LOCATION_NAMES:
        raise _bad(f"spatial target {target!r} is not a location of the item "
                   "(use e.g. $['beckn:itemAttributes.chargingStation.serviceLocation.geo'])")


# --- prepared filters -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreparedSpatial(SpatialFilter):
    """A SpatialFilter with its precomputed point tester (what `build_spatial` returns)."""

    # True: the item matches when the point is NOT in/near the geometry (s_disjoint, quantifier "none");
    # such filters have bbox None, so backends must not narrow on them.
    negate: bool = False
    test: Callable[[float, float], bool] | None = field(default=None, compare=False, repr=False)


def _points(geom: BaseGeometry) -> list[tuple[float, float]]:
    return [(p.x, p.y) for p in getattr(geom, "geoms", [geom])]


def _segments(geom: BaseGeometry) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    segs = []
    for part in getattr(geom, "geoms", [geom]):
        lines: Iterable[Any]
        if isinstance(part, Polygon):
            lines = [part.exterior, *part.interiors]
        elif isinstance(part, (LineString,)):
            lines = [part]
        else:
            lines = []
        for line in lines:
            cs = list(line.coords)
            segs.extend(((a[0], a[1]), (b[0], b[1])) for a, b in zip(cs, cs[1:]))
    return segs


def _areal(geom: BaseGeometry) -> bool:
    return any(isinstance(p, Polygon) for p in getattr(geom, "geoms", [geom]))


_SMALL_CELL = 32       # grid cells with at most this many segments are filtered in plain Python
_FEW_POINTS = 16       # more points than this: a grid narrows them (as zero-length segments)
_VECTOR_FROM = 24      # a point with more candidate segments than this measures them with numpy


def _radius_tester(pts: list[tuple[float, float]], d: float, bbox: tuple[float, float, float, float]):
    minx, miny, maxx, maxy = bbox
    if len(pts) == 1:
        (plon, plat), = pts
        cos_p = math.cos(plat * _DEG)
        half = math.sin(d / (2 * EARTH_R)) ** 2 if d < math.pi * EARTH_R else 1.0

        def one(lon: float, lat: float) -> bool:
            if not (miny <= lat <= maxy and minx <= lon <= maxx):
                return False
            a = math.sin((lat - plat) * _DEG / 2) ** 2 + cos_p * math.cos(lat * _DEG) * \
                math.sin((lon - plon) * _DEG / 2) ** 2
            return a <= half * (1 + 1e-12)
        return one
    if len(pts) > _FEW_POINTS:  # bounded cost per tested point: only the points within reach are measured
        near = _NearSegments([(p, p) for p in pts], d)

        def grid(lon: float, lat: float) -> bool:
            return miny <= lat <= maxy and minx <= lon <= maxx and near.any_within(lon, lat)
        return grid

    def many(lon: float, lat: float) -> bool:
        if not (miny <= lat <= maxy and minx <= lon <= maxx):
            return False
        return any(haversine_m(lon, lat, x, y) <= d for x, y in pts)
    return many


class _SegmentGrid:
    """Uniform lon/lat grid of segment indices: each segment is filed under every cell its
    distance-widened box touches, so a point only measures the segments that can be within reach.
    Built and queried with numpy: its cost is bounded by MAX_ENTRIES, not by Python loops."""

    MAX_ENTRIES = 200_000

    def __init__(self, segs: list[tuple[tuple[float, float], tuple[float, float]]], d: float) -> None:
        dlat = d / _M_PER_DEG * (1 + 1e-9) + 1e-9
        arr = np.asarray(segs, dtype=np.float64).reshape(-1, 4)
        ax, ay, bx, by = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]
        lat_max = np.maximum(np.abs(ay), np.abs(by))
        delta = d / EARTH_R
        polar = lat_max * _DEG + delta >= 89.99 * _DEG
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.minimum(1.0, math.sin(delta) / np.cos(lat_max * _DEG))
        dlon = np.where(polar, 360.0, np.degrees(np.arcsin(np.where(polar, 0.0, ratio))) * (1 + 1e-9) + 1e-9)
        full = polar | (dlon >= 360.0)
        x0 = np.where(full, -180.0, np.minimum(ax, bx) - dlon)
        x1 = np.where(full, 180.0, np.maximum(ax, bx) + dlon)
        y0, y1 = np.minimum(ay, by) - dlat, np.maximum(ay, by) + dlat
        self.x0, self.y0, self.x1, self.y1 = x0, y0, x1, y1
        self.full = np.flatnonzero(full)                      # polar boxes: always checked
        part = np.flatnonzero(~full)
        cell = max(2 * dlat, 0.01)
        while True:
            gx0, gx1 = np.floor(x0[part] / cell).astype(np.int64), np.floor(x1[part] / cell).astype(np.int64)
            gy0, gy1 = np.floor(y0[part] / cell).astype(np.int64), np.floor(y1[part] / cell).astype(np.int64)
            nx, ny = gx1 - gx0 + 1, gy1 - gy0 + 1
            if int((nx * ny).sum()) <= self.MAX_ENTRIES:
                break
            cell *= 2
        self.cell = cell
        counts = nx * ny
        seg = np.repeat(part, counts)                         # one entry per (segment, cell)
        k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        rny = np.repeat(ny, counts)
        gx = np.repeat(gx0, counts) + k // np.maximum(rny, 1)
        gy = np.repeat(gy0, counts) + k % np.maximum(rny, 1)
        order = np.lexsort((seg, gy, gx))
        gx, gy, seg = gx[order], gy[order], seg[order]
        starts = np.flatnonzero(np.r_[True, (gx[1:] != gx[:-1]) | (gy[1:] != gy[:-1])]) if len(seg) else seg
        ends = np.r_[starts[1:], len(seg)]
        self.entries = seg
        self.grid: dict[tuple[int, int], tuple[int, int]] = {
            (int(x), int(y)): (int(a), int(b)) for x, y, a, b in zip(gx[starts], gy[starts], starts, ends)}
        # few segments in a cell (the usual case): plain Python lists beat numpy's per-call overhead; filled on
        # first use of a cell (a dict write is atomic: safe from several threads)
        self.small: dict[tuple[int, int], list[int] | None] = {}
        self.box_list = list(zip(x0.tolist(), y0.tolist(), x1.tolist(), y1.tolist()))

    def candidates(self, lon: float, lat: float) -> "list[int] | np.ndarray":
        """Indices of the segments whose widened box holds the point."""
        key = (math.floor(lon / self.cell), math.floor(lat / self.cell))
        span = self.grid.get(key)
        if not len(self.full):
            if span is None:
                return []
            few = self.small.get(key, False)
            if few is False:
                few = self.small[key] = self.entries[span[0]:span[1]].tolist() \
                    if span[1] - span[0] <= _SMALL_CELL else None
            if few is not None:
                bl = self.box_list
                return [i for i in few if bl[i][0] <= lon <= bl[i][2] and bl[i][1] <= lat <= bl[i][3]]
        if span is None:
            hit = self.full
        else:
            hit = self.entries[span[0]:span[1]]
            if len(self.full):
                hit = np.concatenate([hit, self.full])
        if not len(hit):
            return []
        keep = (self.x0[hit] <= lon) & (lon <= self.x1[hit]) & (self.y0[hit] <= lat) & (lat <= self.y1[hit])
        return hit[keep]


class _NearSegments:
    """"Is the point within `d` of some segment?" with a bounded cost per point: the grid gives the segments
    within reach; many of them are measured at once with numpy (same formula as `segment_distance_m`)."""

    def __init__(self, segs: list[tuple[tuple[float, float], tuple[float, float]]], d: float) -> None:
        self.segs = segs
        self.d = d
        self.grid = _SegmentGrid(segs, d)
        arr = np.asarray(segs, dtype=np.float64).reshape(-1, 4) if segs else np.zeros((0, 4))
        self.ax, self.ay, self.bx, self.by = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]

    def any_within(self, lon: float, lat: float) -> bool:
        cands = self.grid.candidates(lon, lat)
        if len(cands) <= _VECTOR_FROM:
            segs, d = self.segs, self.d
            ids = cands if isinstance(cands, list) else cands.tolist()
            return any(segment_distance_m(lon, lat, *segs[i]) <= d for i in ids)
        return bool((_segment_distances(lon, lat, self.ax[cands], self.ay[cands], self.bx[cands],
                                        self.by[cands]) <= self.d).any())


def _segment_distances(lon: Any, lat: Any, ax0: np.ndarray, ay0: np.ndarray, bx0: np.ndarray,
                       by0: np.ndarray) -> np.ndarray:
    """`segment_distance_m` for many segments at once; `lon`/`lat` one point (floats) or a column of points
    (arrays of shape (n, 1): one row of distances per point, `cds.core.spatialvec`)."""
    cos = np.cos if isinstance(lat, np.ndarray) else math.cos
    k = cos(lat * _DEG)
    ddx, ddy = ax0 - lon, bx0 - lon
    ddx = np.where(ddx > 180.0, ddx - 360.0, np.where(ddx < -180.0, ddx + 360.0, ddx))
    ddy = np.where(ddy > 180.0, ddy - 360.0, np.where(ddy < -180.0, ddy + 360.0, ddy))
    ax, ay = ddx * k, ay0 - lat
    bx, by = ddy * k, by0 - lat
    dx, dy = bx - ax, by - ay
    den = dx * dx + dy * dy
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(den == 0.0, 0.0, np.clip(-(ax * dx + ay * dy) / np.where(den == 0.0, 1.0, den), 0.0, 1.0))
    qx, qy = ax0 + (bx0 - ax0) * t, ay0 + (by0 - ay0) * t
    p1, p2 = lat * _DEG, qy * _DEG
    a = np.sin((p2 - p1) / 2) ** 2 + cos(p1) * np.cos(p2) * np.sin((qx - lon) * _DEG / 2) ** 2
    return 2 * EARTH_R * np.arcsin(np.minimum(1.0, np.sqrt(a)))


def _prepare_now(geom: BaseGeometry) -> None:
    """Prepare for repeated point tests, and make GEOS build its lazy point-location index now: afterwards
    the tests only read it, so the same filter can be used from the loop and a worker thread at once."""
    shapely.prepare(geom)
    x0, y0, x1, y1 = geom.bounds
    shapely.intersects_xy(geom, (x0 + x1) / 2, (y0 + y1) / 2)


class _AreaGrid:
    """Point-in-area with a grid of cells classified once as inside / outside / on the edge;
    only points in edge cells need GEOS."""

    N = 48

    def __init__(self, geom: BaseGeometry) -> None:
        _prepare_now(geom)
        self.geom = geom
        x0, y0, x1, y1 = geom.bounds
        self.x0, self.y0 = x0, y0
        self.w = max((x1 - x0) / self.N, 1e-9)
        self.h = max((y1 - y0) / self.N, 1e-9)
        ix, iy = [a.ravel() for a in np.meshgrid(range(self.N), range(self.N))]
        boxes = shapely.box(x0 + ix * self.w, y0 + iy * self.h, x0 + (ix + 1) * self.w, y0 + (iy + 1) * self.h)
        inside = shapely.contains(geom, boxes)
        touches = shapely.intersects(geom, boxes)
        # 1 = inside, 0 = outside, -1 = edge
        self.state = {(int(a), int(b)): (1 if i else (-1 if t else 0))
                      for a, b, i, t in zip(ix, iy, inside, touches)}

    def covers(self, lon: float, lat: float) -> bool:
        st = self.state.get((math.floor((lon - self.x0) / self.w), math.floor((lat - self.y0) / self.h)), -1)
        if st >= 0:
            return st == 1
        return bool(shapely.intersects_xy(self.geom, lon, lat))


def _point_parts(geom: BaseGeometry) -> list[tuple[float, float]]:
    return [(p.x, p.y) for p in getattr(geom, "geoms", [geom]) if isinstance(p, Point)]


def _shape_tester(geom: BaseGeometry, d: float, bbox: tuple[float, float, float, float]):
    """dwithin for lines/polygons (and mixed multi-geometries)."""
    minx, miny, maxx, maxy = bbox
    pts = _point_parts(geom)
    segs = _segments(geom) + [(p, p) for p in pts]   # points as zero-length segments: one bounded lookup
    area = _AreaGrid(geom) if _areal(geom) else None
    # Built here, at planning (off the loop for a costly request), never lazily in the search: for thousands of
    # segments the build is a loop hold of 100+ ms (docs/decisions.md §G).
    near = _NearSegments(segs, d)

    def test(lon: float, lat: float) -> bool:
        if not (miny <= lat <= maxy and minx <= lon <= maxx):
            return False
        if area is not None and area.covers(lon, lat):
            return True
        return near.any_within(lon, lat)
    return test


def prepare(op: str, geom: BaseGeometry, distance_m: float = 0.0, negate: bool = False) -> PreparedSpatial:
    op = op.lower().removeprefix("s_")
    if op not in OPS:
        raise _bad(f"spatial op 's_{op}' is not supported (use s_dwithin, s_within, s_intersects, "
                   "s_contains or s_disjoint)", SCH_TYPE_NOT_SUPPORTED)
    test_op = op
    if op == "disjoint":  # reported as asked; tested as "not intersects"
        test_op, negate = "intersects", not negate
    if test_op == "dwithin":
        bbox = _bbox(geom, distance_m)
        if isinstance(geom, (Point, MultiPoint)):
            test = _radius_tester(_points(geom), distance_m, bbox)
        else:
            test = _shape_tester(geom, distance_m, bbox)
    else:
        # within / contains / intersects of a station point and the request geometry: the point lies in
        # (or on) the geometry. A point cannot contain an area, so s_contains is read the only useful way.
        bbox = _bbox(geom, 0.0)
        minx, miny, maxx, maxy = bbox
        if _areal(geom):
            covers = _AreaGrid(geom).covers
        elif isinstance(geom, (Point, MultiPoint)):
            at = set(_points(geom))       # a point meets a point only where they are equal: a set lookup

            def covers(lon: float, lat: float) -> bool:
                return (lon, lat) in at
        else:
            _prepare_now(geom)

            def covers(lon: float, lat: float) -> bool:
                return bool(shapely.intersects_xy(geom, lon, lat))

        def test(lon: float, lat: float) -> bool:
            return miny <= lat <= maxy and minx <= lon <= maxx and covers(lon, lat)
    return PreparedSpatial(op=op, geometry=geom, distance_m=distance_m, bbox=None if negate else bbox,
                           negate=negate, test=test)


@dataclass(frozen=True, slots=True)
class _Read:
    op: str
    geometry: BaseGeometry
    distance_m: float
    negate: bool


def _read_spatial(spec: Any, limits: GeometryLimits) -> _Read:
    """Validate one constraint (cheap checks first) and build its geometry (repaired if needed)."""
    op = (spec.op or "").strip().lower() if isinstance(spec.op, str) else ""
    if not op:
        raise _bad("spatial constraint needs an 'op'")
    for t in spec.targets or []:
        check_target(t)
    if spec.geometry is None:
        raise _bad("spatial constraint needs a 'geometry'", SCH_SCHEMA_VALIDATION_FAILED)
    quant = (spec.quantifier or "any").lower()
    if quant not in ("any", "all", "none"):
        raise _bad(f"spatial quantifier {spec.quantifier!r} is not one of any, all, none")
    if op.removeprefix("s_") not in OPS:
        prepare(op, Point(0, 0))  # raises the clear "not supported" error
    dist = spec.distance_m
    dwithin = op.removeprefix("s_") == "dwithin"
    if dwithin and dist is not None:
        if isinstance(dist, bool) or not isinstance(dist, (int, float)) or dist != dist or dist < 0:
            raise _bad("distanceMeters must be a number >= 0")
        if dist > MAX_DISTANCE_M:
            raise _bad(f"distanceMeters must be at most {int(MAX_DISTANCE_M)} m")
    geom = parse_geometry(spec.geometry, limits)
    if dwithin:
        if dist is None:
            if not _areal(geom):
                raise _bad("s_dwithin needs 'distanceMeters'")
            dist = 0.0
    else:
        dist = 0.0
    # one station point per item: "all" is the same as "any"
    return _Read(op, geom, float(dist), quant == "none")


def build_spatials(specs: Iterable[Any], limits: GeometryLimits = DEFAULT_LIMITS) -> tuple[PreparedSpatial, ...]:
    """A request's constraints -> prepared SpatialFilters, within `limits` counted on what is computed: every
    geometry is read (and repaired) first, routes are simplified when the request's vertices exceed the limit,
    then the total is judged, and only then are the (costlier) testers built."""
    try:
        return _build_spatials(specs, limits)
    except ShapelyError as e:  # GEOS refuses a degenerate shape: the request's fault, not ours
        raise _bad(f"geometry cannot be used ({str(e)[:120]})") from None


def _build_spatials(specs: Iterable[Any], limits: GeometryLimits) -> tuple[PreparedSpatial, ...]:
    read = [_read_spatial(s, limits) for s in specs]
    total = sum(vertex_count(r.geometry) for r in read)
    if total > limits.max_vertices and limits.route_simplify_m > 0:
        read = [_Read(r.op, simplify_route(r.geometry, limits.route_simplify_m), r.distance_m, r.negate)
                for r in read]
        total = sum(vertex_count(r.geometry) for r in read)
    if total > limits.max_vertices:
        raise _bad(f"the request's geometries have {total} vertices as computed (after repair and route "
                   f"simplification), more than {limits.max_vertices} (CDS_MAX_GEOMETRY_VERTICES)")
    out = []
    for r in read:
        budget.check()
        out.append(prepare(r.op, r.geometry, r.distance_m, negate=r.negate))
    return tuple(out)


def build_spatial(spec: Any, limits: GeometryLimits = DEFAULT_LIMITS) -> PreparedSpatial:
    """cds.core.models.SpatialSpec -> a prepared SpatialFilter (validated, bounded)."""
    return build_spatials([spec], limits)[0]


_ADHOC: dict[int, tuple[SpatialFilter, PreparedSpatial]] = {}


def _prepared(f: SpatialFilter) -> PreparedSpatial:
    if isinstance(f, PreparedSpatial) and f.test is not None:
        return f
    hit = _ADHOC.get(id(f))
    if hit is not None and hit[0] is f:
        return hit[1]
    p = prepare(f.op, f.geometry, f.distance_m)
    if len(_ADHOC) > 256:
        _ADHOC.clear()
    _ADHOC[id(f)] = (f, p)
    return p


def contains(f: SpatialFilter, lon: float | None, lat: float | None) -> bool:
    """Does the station point satisfy the constraint? (exact; an item without a location never does)"""
    if lon is None or lat is None:
        return False
    p = _prepared(f)
    return p.test(lon, lat) != p.negate  # type: ignore[misc]


def distance_m(geometry: BaseGeometry, lon: float, lat: float) -> float:
    """Geodesic distance (m) from a point to a geometry; 0 inside a polygon."""
    if isinstance(geometry, Point):
        return haversine_m(lon, lat, geometry.x, geometry.y)
    if _areal(geometry) and shapely.intersects_xy(geometry, lon, lat):
        return 0.0
    best = math.inf
    for part in getattr(geometry, "geoms", [geometry]):
        if isinstance(part, Point):
            best = min(best, haversine_m(lon, lat, part.x, part.y))
    for a, b in _segments(geometry):
        best = min(best, segment_distance_m(lon, lat, a, b))
    return best


def origin_of(geom: BaseGeometry) -> tuple[float, float]:
    """Ordering origin: a point itself, a route's first vertex, an area's centroid (first part of multi)."""
    part = geom.geoms[0] if hasattr(geom, "geoms") and len(geom.geoms) else geom
    if isinstance(part, Point):
        return (part.x, part.y)
    if isinstance(part, LineString):
        x, y = part.coords[0][:2]
        return (x, y)
    c = part.centroid
    return (c.x, c.y)
