"""Reading a request's spatial constraints at bounded cost (docs/decisions.md §24): GeoJSON geometries validated
while they are read (positions counted before anything is built), invalid polygons repaired only when cheap,
routes simplified when a request's vertices exceed the limit, and target paths that must name the item's location
(docs/decisions.md §S Matching). Errors are 400 `SCH_*` NACKs on `message.spatial`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from shapely.errors import ShapelyError
from shapely.geometry import LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

from cds.core import budget
from cds.core.errors import SCH_SCHEMA_VALIDATION_FAILED, SCH_TYPE_NOT_SUPPORTED, BecknError, schema_error
from cds.core.geodesy import M_PER_DEG
from cds.core.jsonpath import _Parser  # targets use the filter's path grammar and vocabulary
from cds.core.jsonpath_ast import Index, Name, Wild


MAX_VERTICES = 10_000     # default of CDS_MAX_GEOMETRY_VERTICES (see GeometryLimits)
MAX_REPAIR_CROSSINGS = 64  # default of CDS_MAX_REPAIR_CROSSINGS
ROUTE_SIMPLIFY_M = 1.0    # default of CDS_ROUTE_SIMPLIFY_M


GEOMETRY_TYPES = ("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon")
# Names that denote a location inside an item (after prefix stripping); any target ending in one of
# them (optionally followed by geo/coordinates) resolves to the station location.
_LOCATION_NAMES = {"serviceLocation", "availableAt", "location", "locations", "geo", "gps", "stationLocation"}
_LOCATION_TAIL = {"geo", "coordinates", "gps"}


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


def spatial_error(msg: str, code: str = SCH_SCHEMA_VALIDATION_FAILED) -> BecknError:
    return schema_error(msg, "message.spatial", code)


def _position(p: Any, counter: list[int]) -> tuple[float, float]:
    if not isinstance(p, (list, tuple)) or not 2 <= len(p) <= 3:
        raise spatial_error("a GeoJSON position must be [longitude, latitude]")
    lon, lat = p[0], p[1]
    for v in (lon, lat):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or isinstance(v, float) and not math.isfinite(v):
            raise spatial_error("GeoJSON coordinates must be finite numbers")
    if not -180.0 <= lon <= 180.0 or not -90.0 <= lat <= 90.0:
        raise spatial_error(f"coordinate [{lon}, {lat}] out of range: GeoJSON order is [longitude, latitude]")
    counter[0] += 1
    if counter[0] > counter[1]:
        raise spatial_error(f"geometry has more than {counter[1]} vertices (CDS_MAX_GEOMETRY_VERTICES)")
    return float(lon), float(lat)


def _positions(ps: Any, counter: list[int], minimum: int, what: str) -> list[tuple[float, float]]:
    if not isinstance(ps, (list, tuple)) or len(ps) < minimum:
        raise spatial_error(f"a {what} needs at least {minimum} positions")
    plain = plain_positions(ps)
    if plain is None:           # something to refuse: `_position` says what, in order
        return [_position(p, counter) for p in ps]
    counter[0] += len(plain)
    if counter[0] > counter[1]:
        raise spatial_error(f"geometry has more than {counter[1]} vertices (CDS_MAX_GEOMETRY_VERTICES)")
    return plain


def plain_positions(ps: list | tuple) -> list[tuple[float, float]] | None:
    """The positions as JSON gives them ([lon, lat] lists of numbers in range), read in one loop without
    `_position`'s checks per value (a route's vertices are most of its planning, docs/decisions.md §G); None
    when any is otherwise. A comparison with NaN is false and infinities are out of range: every float that
    passes is finite, as `_position` requires."""
    out = []
    for p in ps:
        if type(p) is not list or len(p) != 2:
            return None
        lon, lat = p
        if not ((type(lon) is float or type(lon) is int) and (type(lat) is float or type(lat) is int)
                and -180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            return None
        out.append((float(lon), float(lat)))
    return out


def _ring_list(rings: Any, counter: list[int]) -> list[list[tuple[float, float]]]:
    if not isinstance(rings, (list, tuple)) or not rings:
        raise spatial_error("a Polygon needs at least one linear ring")
    out = []
    for r in rings:
        ring = _positions(r, counter, 4, "Polygon ring")
        if ring[0] != ring[-1]:
            raise spatial_error("a Polygon ring must be closed (first position equal to the last)")
        out.append(ring)
    return out


def parse_geometry(g: Any, limits: GeometryLimits = DEFAULT_LIMITS) -> BaseGeometry:
    """Validate a GeoJSON geometry (bounded) and build the shapely geometry; an invalid one is repaired
    when that is cheap (see `GeometryLimits`), else refused."""
    if not isinstance(g, dict):
        raise spatial_error("spatial geometry must be a GeoJSON object")
    gtype, coords = g.get("type"), g.get("coordinates")
    if gtype not in GEOMETRY_TYPES:
        raise spatial_error(f"geometry type {gtype!r} is not supported (use one of {', '.join(GEOMETRY_TYPES)})",
                            SCH_TYPE_NOT_SUPPORTED)
    n = [0, limits.max_vertices]

    def many(kind: str) -> list[Any]:
        if not isinstance(coords, (list, tuple)) or not coords:
            raise spatial_error(f"a {kind} needs at least one part")
        if len(coords) > limits.max_vertices:
            raise spatial_error(f"geometry has more than {limits.max_vertices} parts (CDS_MAX_GEOMETRY_VERTICES)")
        return list(coords)

    valid = False
    if gtype == "Point":     # a point of finite coordinates is always valid
        geom: BaseGeometry = shapely.points(np.array(_position(coords, n)))     # Point() without its checks
        valid = True
    elif gtype == "LineString":
        pts = _positions(coords, n, 2, "LineString")
        geom = shapely.linestrings(pts)     # LineString(pts) reads every position again, in Python
        # GEOS's whole rule for a line of finite coordinates: two distinct positions (no call into it needed)
        valid = pts.count(pts[0]) < len(pts)
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
    if not valid and not shapely.is_valid(geom):  # cheap (GEOS stops at the first problem)
        geom = _repair(geom, limits)
    return geom


def _repair(geom: BaseGeometry, limits: GeometryLimits) -> BaseGeometry:
    """make_valid, only after a cheap count of the rings' crossings shows the repair is cheap too."""
    crossings = count_crossings(geom, limits.max_repair_crossings, limits.max_crossing_pairs)
    if crossings > limits.max_repair_crossings:
        raise spatial_error(f"geometry is not valid (its edges cross each other) and crosses itself more than "
                            f"{limits.max_repair_crossings} times (CDS_MAX_REPAIR_CROSSINGS): send a simple polygon")
    budget.check()
    try:
        repaired = shapely.make_valid(geom)  # self-intersecting rings etc.: repair rather than refuse
    except ShapelyError as e:
        raise spatial_error(f"geometry is not valid and cannot be repaired ({str(e)[:120]})") from None
    if repaired.is_empty:
        raise spatial_error("geometry is empty once repaired (a polygon without area)")
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
            raise spatial_error(f"geometry is not valid and too intricate to check for a repair (more than {max_pairs} "
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
    return 1 if isinstance(geom, Point) else int(shapely.get_num_coordinates(geom))


def simplify_route(geom: BaseGeometry, tolerance_m: float) -> BaseGeometry:
    """A LineString/MultiLineString with fewer vertices, every point within `tolerance_m` of the original
    (Douglas-Peucker in degrees of latitude, the longest degree: never further than the tolerance)."""
    if tolerance_m <= 0 or not isinstance(geom, (LineString, MultiLineString)):
        return geom
    out = shapely.simplify(geom, tolerance_m / M_PER_DEG, preserve_topology=False)
    return geom if out.is_empty else out


def check_target(target: Any) -> None:
    """Every target form in the wild names the item's location; anything else is refused."""
    if not isinstance(target, str) or not target.strip() or len(target) > 512:
        raise spatial_error("spatial target must be a non-empty JSONPath string")
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
        raise spatial_error(f"spatial target {target!r} is not a valid path") from None
    names = [s.name for s in segs if isinstance(s, Name)]
    if any(not isinstance(s, (Name, Wild, Index)) for s in segs):
        names = []
    while names and names[-1] in _LOCATION_TAIL and len(names) > 1:
        names.pop()
    if not names or names[-1] not in _LOCATION_NAMES:
        raise spatial_error(f"spatial target {target!r} is not a location of the item "
                            "(use e.g. $['beckn:itemAttributes.chargingStation.serviceLocation.geo'])")
