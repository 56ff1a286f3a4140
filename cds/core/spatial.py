"""Spatial constraints of a discover request: build them (`build_spatials`, bounded: `cds.core.spatial_input`),
prepare a filter's point test (`prepare`, with `cds.core.spatial_testers`) and test a station against it
(`contains`, exact), plus the distances answers are ordered by (docs/decisions.md §S Matching, §8).

Every spatial target resolves to the item's one station location (docs/decisions.md §S), so a constraint is a test of
a single lon/lat point against the request geometry. Distances are on the sphere of `cds.core.geodesy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import shapely
from shapely.errors import ShapelyError
from shapely.geometry import LineString, MultiPoint, Point
from shapely.geometry.base import BaseGeometry

from cds.core import budget
from cds.core.errors import SCH_SCHEMA_VALIDATION_FAILED, SCH_TYPE_NOT_SUPPORTED
from cds.core.geodesy import haversine_m, reach_bbox, reach_box, segment_distance_m
from cds.core.query import SpatialFilter
from cds.core.spatial_input import (
    DEFAULT_LIMITS, GeometryLimits, check_target, parse_geometry, simplify_route, spatial_error, vertex_count,
)
from cds.core.spatial_testers import AreaGrid, is_areal, points_of, prepare_now, radius_tester, segments_of, shape_tester


MAX_DISTANCE_M = 2_000_000.0
MAX_SPATIAL = 8           # constraints per request


# op (lower case, without "s_") -> what we test
OPS = {"dwithin", "within", "intersects", "contains", "disjoint"}


@dataclass(frozen=True, slots=True)
class PreparedSpatial(SpatialFilter):
    """A SpatialFilter with its precomputed point tester (what `build_spatial` returns)."""

    # True: the item matches when the point is NOT in/near the geometry (s_disjoint, quantifier "none");
    # such filters have bbox None, so backends must not narrow on them.
    negate: bool = False
    test: Callable[[float, float], bool] | None = field(default=None, compare=False, repr=False)


def prepare(op: str, geom: BaseGeometry, distance_m: float = 0.0, negate: bool = False) -> PreparedSpatial:
    op = op.lower().removeprefix("s_")
    if op not in OPS:
        raise spatial_error(f"spatial op 's_{op}' is not supported (use s_dwithin, s_within, s_intersects, "
                            "s_contains or s_disjoint)", SCH_TYPE_NOT_SUPPORTED)
    test_op = op
    if op == "disjoint":  # reported as asked; tested as "not intersects"
        test_op, negate = "intersects", not negate
    if test_op == "dwithin":
        if isinstance(geom, (Point, MultiPoint)):
            pts = points_of(geom)
            bbox = reach_box(_extent(pts), distance_m)
            test = radius_tester(pts, distance_m, bbox)
        else:
            bbox = reach_bbox(geom, distance_m)
            test = shape_tester(geom, distance_m, bbox)
    else:
        # within / contains / intersects of a station point and the request geometry: the point lies in
        # (or on) the geometry. A point cannot contain an area, so s_contains is read the only useful way.
        bbox = reach_bbox(geom, 0.0)
        minx, miny, maxx, maxy = bbox
        if is_areal(geom):
            covers = AreaGrid(geom).covers
        elif isinstance(geom, (Point, MultiPoint)):
            at = set(points_of(geom))       # a point meets a point only where they are equal: a set lookup

            def covers(lon: float, lat: float) -> bool:
                return (lon, lat) in at
        else:
            prepare_now(geom)

            def covers(lon: float, lat: float) -> bool:
                return bool(shapely.intersects_xy(geom, lon, lat))

        def test(lon: float, lat: float) -> bool:
            return miny <= lat <= maxy and minx <= lon <= maxx and covers(lon, lat)
    return PreparedSpatial(op=op, geometry=geom, distance_m=distance_m, bbox=None if negate else bbox,
                           negate=negate, test=test)


def _extent(pts: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """The bounds of these points, as GEOS gives them (`geom.bounds`, a call that costs more than a radius's test)."""
    if len(pts) == 1:
        (x, y), = pts
        return (x, y, x, y)
    if not pts:                             # an empty MultiPoint: GEOS's NaN bounds (nothing is near it)
        return (math.nan,) * 4
    xs, ys = [x for x, _ in pts], [y for _, y in pts]
    return (min(xs), min(ys), max(xs), max(ys))


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
        raise spatial_error("spatial constraint needs an 'op'")
    for t in spec.targets or []:
        check_target(t)
    if spec.geometry is None:
        raise spatial_error("spatial constraint needs a 'geometry'", SCH_SCHEMA_VALIDATION_FAILED)
    quant = (spec.quantifier or "any").lower()
    if quant not in ("any", "all", "none"):
        raise spatial_error(f"spatial quantifier {spec.quantifier!r} is not one of any, all, none")
    if op.removeprefix("s_") not in OPS:
        prepare(op, Point(0, 0))  # raises the clear "not supported" error
    dist = spec.distance_m
    dwithin = op.removeprefix("s_") == "dwithin"
    if dwithin and dist is not None:
        if isinstance(dist, bool) or not isinstance(dist, (int, float)) or dist != dist or dist < 0:
            raise spatial_error("distanceMeters must be a number >= 0")
        if dist > MAX_DISTANCE_M:
            raise spatial_error(f"distanceMeters must be at most {int(MAX_DISTANCE_M)} m")
    geom = parse_geometry(spec.geometry, limits)
    if dwithin:
        if dist is None:
            if not is_areal(geom):
                raise spatial_error("s_dwithin needs 'distanceMeters'")
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
        raise spatial_error(f"geometry cannot be used ({str(e)[:120]})") from None


def _build_spatials(specs: Iterable[Any], limits: GeometryLimits) -> tuple[PreparedSpatial, ...]:
    read = [_read_spatial(s, limits) for s in specs]
    total = sum(vertex_count(r.geometry) for r in read)
    if total > limits.max_vertices and limits.route_simplify_m > 0:
        read = [_Read(r.op, simplify_route(r.geometry, limits.route_simplify_m), r.distance_m, r.negate)
                for r in read]
        total = sum(vertex_count(r.geometry) for r in read)
    if total > limits.max_vertices:
        raise spatial_error(f"the request's geometries have {total} vertices as computed (after repair and route "
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


def prepared(f: SpatialFilter) -> PreparedSpatial:
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
    p = prepared(f)
    return p.test(lon, lat) != p.negate  # type: ignore[misc]


def distance_m(geometry: BaseGeometry, lon: float, lat: float) -> float:
    """Geodesic distance (m) from a point to a geometry; 0 inside a polygon."""
    if isinstance(geometry, Point):
        return haversine_m(lon, lat, geometry.x, geometry.y)
    if is_areal(geometry) and shapely.intersects_xy(geometry, lon, lat):
        return 0.0
    best = math.inf
    for part in getattr(geometry, "geoms", [geometry]):
        if isinstance(part, Point):
            best = min(best, haversine_m(lon, lat, part.x, part.y))
    for a, b in segments_of(geometry):
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
