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
from typing import Any, Callable, Iterable

import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

from cds.core.errors import SCH_SCHEMA_VALIDATION_FAILED, SCH_TYPE_NOT_SUPPORTED, BecknError, schema_error
from cds.core.jsonpath import Index, Name, Wild, _Parser  # targets use the filter's path grammar and vocabulary
from cds.core.query import SpatialFilter

EARTH_R = 6_371_008.8
MAX_DISTANCE_M = 2_000_000.0
MAX_VERTICES = 10_000
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


# --- validation -----------------------------------------------------------------------------------------


def _bad(msg: str, code: str = SCH_SCHEMA_VALIDATION_FAILED) -> BecknError:
    return schema_error(msg, "message.spatial", code)


def _position(p: Any, counter: list[int]) -> tuple[float, float]:
    if not isinstance(p, (list, tuple)) or not 2 <= len(p) <= 3:
        raise _bad("a GeoJSON position must be [longitude, latitude]")
    lon, lat = p[0], p[1]
    for v in (lon, lat):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _bad("GeoJSON coordinates must be finite numbers")
    if not -180.0 <= lon <= 180.0 or not -90.0 <= lat <= 90.0:
        raise _bad(f"coordinate [{lon}, {lat}] out of range: GeoJSON order is [longitude, latitude]")
    counter[0] += 1
    if counter[0] > MAX_VERTICES:
        raise _bad(f"geometry has more than {MAX_VERTICES} vertices")
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


def parse_geometry(g: Any) -> BaseGeometry:
    """Validate a GeoJSON geometry (bounded) and build the shapely geometry."""
    if not isinstance(g, dict):
        raise _bad("spatial geometry must be a GeoJSON object")
    gtype, coords = g.get("type"), g.get("coordinates")
    if gtype not in GEOMETRY_TYPES:
        raise _bad(f"geometry type {gtype!r} is not supported (use one of {', '.join(GEOMETRY_TYPES)})",
                   SCH_TYPE_NOT_SUPPORTED)
    n = [0]

    def many(kind: str) -> list[Any]:
        if not isinstance(coords, (list, tuple)) or not coords:
            raise _bad(f"a {kind} needs at least one part")
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
    if not geom.is_valid:
        geom = shapely.make_valid(geom)  # self-intersecting rings etc.: repair rather than refuse
    return geom


def check_target(target: Any) -> None:
    """Every target form in the wild names the item's location; anything else is refused."""
    if not isinstance(target, str) or not target.strip() or len(target) > 512:
        raise _bad("spatial target must be a non-empty JSONPath string")
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

    def many(lon: float, lat: float) -> bool:
        if not (miny <= lat <= maxy and minx <= lon <= maxx):
            return False
        return any(haversine_m(lon, lat, x, y) <= d for x, y in pts)
    return many


class _SegmentGrid:
    """Uniform lon/lat grid of segment indices: each segment is filed under every cell its
    distance-widened box touches, so a point only measures the segments that can be within reach."""

    MAX_ENTRIES = 200_000

    def __init__(self, segs: list[tuple[tuple[float, float], tuple[float, float]]], d: float) -> None:
        dlat = d / _M_PER_DEG * (1 + 1e-9) + 1e-9
        boxes = []
        for a, b in segs:
            dlon = _dlon_for(d, max(abs(a[1]), abs(b[1])))
            if dlon >= 360.0:
                boxes.append((-180.0, min(a[1], b[1]) - dlat, 180.0, max(a[1], b[1]) + dlat))
            else:
                boxes.append((min(a[0], b[0]) - dlon, min(a[1], b[1]) - dlat,
                              max(a[0], b[0]) + dlon, max(a[1], b[1]) + dlat))
        cell = max(2 * dlat, 0.01)
        while sum((int((x1 - x0) / cell) + 2) * (int((y1 - y0) / cell) + 2) for x0, y0, x1, y1 in boxes) \
                > self.MAX_ENTRIES:
            cell *= 2
        self.cell = cell
        self.boxes = boxes
        self.full = [i for i, bx in enumerate(boxes) if bx[2] - bx[0] >= 360.0]  # polar boxes: always check
        grid: dict[tuple[int, int], list[int]] = {}
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            if x1 - x0 >= 360.0:
                continue
            for gx in range(math.floor(x0 / cell), math.floor(x1 / cell) + 1):
                for gy in range(math.floor(y0 / cell), math.floor(y1 / cell) + 1):
                    grid.setdefault((gx, gy), []).append(i)
        self.grid = grid

    def candidates(self, lon: float, lat: float) -> list[int]:
        """Segments whose widened box holds the point."""
        hit = self.grid.get((math.floor(lon / self.cell), math.floor(lat / self.cell)), [])
        boxes = self.boxes
        out = [i for i in hit if boxes[i][0] <= lon <= boxes[i][2] and boxes[i][1] <= lat <= boxes[i][3]]
        return out + self.full if self.full else out


class _AreaGrid:
    """Point-in-area with a grid of cells classified once as inside / outside / on the edge;
    only points in edge cells need GEOS."""

    N = 48

    def __init__(self, geom: BaseGeometry) -> None:
        shapely.prepare(geom)
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
    segs = _segments(geom)
    pts = _point_parts(geom)
    area = _AreaGrid(geom) if _areal(geom) else None
    grid = _SegmentGrid(segs, d)

    def test(lon: float, lat: float) -> bool:
        if not (miny <= lat <= maxy and minx <= lon <= maxx):
            return False
        if area is not None and area.covers(lon, lat):
            return True
        if pts and any(haversine_m(lon, lat, x, y) <= d for x, y in pts):
            return True
        return any(segment_distance_m(lon, lat, *segs[i]) <= d for i in grid.candidates(lon, lat))
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
        else:
            shapely.prepare(geom)

            def covers(lon: float, lat: float) -> bool:
                return bool(shapely.intersects_xy(geom, lon, lat))

        def test(lon: float, lat: float) -> bool:
            return miny <= lat <= maxy and minx <= lon <= maxx and covers(lon, lat)
    return PreparedSpatial(op=op, geometry=geom, distance_m=distance_m, bbox=None if negate else bbox,
                           negate=negate, test=test)


def build_spatial(spec: Any) -> PreparedSpatial:
    """cds.core.models.SpatialSpec -> a prepared SpatialFilter (validated, bounded)."""
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
    geom = parse_geometry(spec.geometry)
    dist = spec.distance_m
    if op.removeprefix("s_") == "dwithin":
        if dist is None:
            if not _areal(geom):
                raise _bad("s_dwithin needs 'distanceMeters'")
            dist = 0.0
        if isinstance(dist, bool) or not isinstance(dist, (int, float)) or not math.isfinite(dist) or dist < 0:
            raise _bad("distanceMeters must be a number >= 0")
        if dist > MAX_DISTANCE_M:
            raise _bad(f"distanceMeters must be at most {int(MAX_DISTANCE_M)} m")
    else:
        dist = 0.0
    # one station point per item: "all" is the same as "any"
    return prepare(op, geom, float(dist), negate=(quant == "none"))


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
