"""cds.core.spatial and its point testers (cds.core.spatial_testers): exact distance tests and bbox supersets.

Distances are checked against independent computations written here: the spherical law of cosines for
point distances and dense sampling of segments (not the projection the module uses).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cds.core import spatial
from cds.core.models import SpatialSpec
from cds.core.query import SpatialFilter

R = 6_371_008.8
BENGALURU = (77.5946, 12.9716)
MYSURU = (76.6394, 12.2958)
DELHI = (77.2090, 28.6139)
MUMBAI = (72.8777, 19.0760)


def cosines_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance by the spherical law of cosines (independent of haversine)."""
    p1, p2 = math.radians(a[1]), math.radians(b[1])
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(math.radians(b[0] - a[0]))
    return R * math.acos(max(-1.0, min(1.0, c)))


def destination(start: tuple[float, float], bearing_deg: float, dist_m: float) -> tuple[float, float]:
    """Point reached from `start` along a great circle (standard direct formula)."""
    lat1, lon1, th, d = math.radians(start[1]), math.radians(start[0]), math.radians(bearing_deg), dist_m / R
    lat2 = math.asin(math.sin(lat1) * math.cos(d) + math.cos(lat1) * math.sin(d) * math.cos(th))
    lon2 = lon1 + math.atan2(math.sin(th) * math.sin(d) * math.cos(lat1), math.cos(d) - math.sin(lat1) * math.sin(lat2))
    return ((math.degrees(lon2) + 540) % 360 - 180, math.degrees(lat2))


def sampled_distance(p: tuple[float, float], coords: list[tuple[float, float]], n: int = 4000) -> float:
    best = math.inf
    for a, b in zip(coords, coords[1:]):
        for i in range(n + 1):
            t = i / n
            best = min(best, cosines_m(p, (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)))
    return best


def spec(op: str = "s_dwithin", geometry: dict | None = None, distance: float | None = 10_000,
         targets: list[str] | None = None, quantifier: str = "any") -> SpatialSpec:
    return SpatialSpec(op=op, targets=targets or [], geometry=geometry, distance_m=distance, quantifier=quantifier)


def point(lon: float, lat: float) -> dict:
    return {"type": "Point", "coordinates": [lon, lat]}


# --- distances -------------------------------------------------------------------------------------------


def test_radius_boundary() -> None:
    f = spatial.build_spatial(spec(geometry=point(77.59, 12.94), distance=10_000))
    for bearing in range(0, 360, 30):
        assert spatial.contains(f, *destination((77.59, 12.94), bearing, 9_990))
        assert not spatial.contains(f, *destination((77.59, 12.94), bearing, 10_010))
    assert spatial.contains(f, *BENGALURU)                # the UBC example station is ~3.5 km away
    assert not spatial.contains(f, None, None)


def test_route_corridor_bengaluru_mysuru() -> None:
    route = {"type": "LineString", "coordinates": [list(BENGALURU), list(MYSURU)]}
    f = spatial.build_spatial(spec(geometry=route, distance=5_000))
    mid = ((BENGALURU[0] + MYSURU[0]) / 2, (BENGALURU[1] + MYSURU[1]) / 2)
    bearing = math.degrees(math.atan2(MYSURU[0] - BENGALURU[0], MYSURU[1] - BENGALURU[1])) + 90
    near, far = destination(mid, bearing, 3_000), destination(mid, bearing, 7_000)
    assert spatial.contains(f, *near) and not spatial.contains(f, *far)
    assert not spatial.contains(f, *destination(MYSURU, 250, 6_000))     # beyond the route's end
    assert spatial.contains(f, *destination(MYSURU, 250, 4_000))
    for p in (near, far, (77.1, 12.63), (76.9, 12.9)):
        assert spatial.distance_m(f.geometry, *p) == pytest.approx(sampled_distance(p, [BENGALURU, MYSURU]),
                                                                   rel=0.005, abs=40)


def test_polygon_ops() -> None:
    square = {"type": "Polygon", "coordinates": [[[77.5, 12.9], [77.7, 12.9], [77.7, 13.1], [77.5, 13.1],
                                                  [77.5, 12.9]]]}
    inside, outside_near = (77.6, 13.0), destination((77.7, 13.0), 90, 1_000)
    for op in ("s_within", "S_INTERSECTS", "s_contains"):
        f = spatial.build_spatial(spec(op=op, geometry=square, distance=None))
        assert spatial.contains(f, *inside) and not spatial.contains(f, *outside_near)
    near = spatial.build_spatial(spec(geometry=square, distance=2_000))
    assert spatial.contains(near, *inside) and spatial.contains(near, *outside_near)
    assert not spatial.contains(near, *destination((77.7, 13.0), 90, 3_000))
    disjoint = spatial.build_spatial(spec(op="s_disjoint", geometry=square, distance=None))
    assert not spatial.contains(disjoint, *inside) and spatial.contains(disjoint, *outside_near)
    assert disjoint.bbox is None and disjoint.op == "disjoint" and disjoint.negate
    none = spatial.build_spatial(spec(op="s_within", geometry=square, quantifier="none"))
    assert spatial.contains(none, *outside_near) and not spatial.contains(none, *inside)


def test_many_vertex_polygon_uses_index_and_stays_exact() -> None:
    ring = [list(destination((77.6, 12.97), b * 3.6, 20_000)) for b in range(100)]
    ring.append(ring[0])
    f = spatial.build_spatial(spec(geometry={"type": "Polygon", "coordinates": [ring]}, distance=1_000))
    coords = [tuple(c) for c in ring]
    for bearing in (0, 45, 100, 200, 333):
        for r in (20_500, 21_500):
            p = destination((77.6, 12.97), bearing, r)
            expected = sampled_distance(p, coords, 200) <= 1_000
            assert spatial.contains(f, *p) == expected


def test_plain_spatial_filter_works_too() -> None:
    # a SpatialFilter built elsewhere (not by build_spatial) is prepared on first use
    from shapely.geometry import Point

    f = SpatialFilter(op="dwithin", geometry=Point(77.59, 12.94), distance_m=5_000)
    assert spatial.contains(f, *BENGALURU) and not spatial.contains(f, *MYSURU)


def test_origin() -> None:
    from shapely.geometry import LineString, Polygon

    assert spatial.origin_of(LineString([BENGALURU, MYSURU])) == BENGALURU
    assert spatial.origin_of(Polygon([(0, 0), (2, 0), (2, 2), (0, 2)])) == (1.0, 1.0)


# --- properties -------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.floats(-179.9, 179.9), st.floats(-88, 88), st.floats(0, 2_000_000), st.floats(0, 360),
       st.floats(0, 1.3))
def test_radius_bbox_is_superset_and_contains_is_exact(lon, lat, dist, bearing, frac) -> None:
    f = spatial.build_spatial(spec(geometry=point(lon, lat), distance=dist))
    p = destination((lon, lat), bearing, dist * frac)
    true_d = cosines_m((lon, lat), p)
    assume(abs(true_d - dist) > 1.0)                       # keep away from the rounding edge
    assert spatial.contains(f, *p) == (true_d <= dist)
    if spatial.contains(f, *p):
        minx, miny, maxx, maxy = f.bbox
        assert minx <= p[0] <= maxx and miny <= p[1] <= maxy


@settings(max_examples=100, deadline=None)
@given(st.floats(68, 97), st.floats(8, 35), st.floats(0, 360), st.floats(1_000, 300_000), st.floats(0, 360),
       st.floats(0, 60_000), st.floats(100, 30_000))
def test_corridor_matches_sampling(lon, lat, heading, length, bearing, off, dist) -> None:
    """India-sized routes: contains() agrees with dense sampling (outside a 0.5% band) and bbox holds."""
    a = (lon, lat)
    b = destination(a, heading, length)
    f = spatial.build_spatial(spec(geometry={"type": "LineString", "coordinates": [list(a), list(b)]},
                                   distance=dist))
    mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    p = destination(mid, bearing, off)
    true_d = sampled_distance(p, [a, b], 2000)
    assert spatial.distance_m(f.geometry, *p) == pytest.approx(true_d, rel=0.005, abs=length / 2000 + 1)
    if abs(true_d - dist) > 0.005 * dist + length / 2000 + 1:
        assert spatial.contains(f, *p) == (true_d <= dist)
    if spatial.contains(f, *p):
        minx, miny, maxx, maxy = f.bbox
        assert minx <= p[0] <= maxx and miny <= p[1] <= maxy


@settings(max_examples=60, deadline=None)
@given(st.floats(68, 97), st.floats(8, 35), st.lists(st.floats(2_000, 60_000), min_size=3, max_size=40),
       st.lists(st.tuples(st.floats(0, 360), st.floats(0, 70_000)), min_size=1, max_size=30))
def test_area_grid_agrees_with_shapely(lon, lat, radii, probes) -> None:
    """Point-in-polygon through the pre-classified grid equals a direct shapely covers() test."""
    from shapely.geometry import Point as P
    from shapely.geometry import Polygon as Poly

    ring = [destination((lon, lat), i * 360 / len(radii), r) for i, r in enumerate(radii)]
    ring.append(ring[0])
    poly = Poly(ring)
    assume(poly.is_valid and poly.area > 0)
    f = spatial.build_spatial(spec(op="s_within", geometry={"type": "Polygon", "coordinates": [ring]}, distance=None))
    for bearing, dist in probes:
        p = destination((lon, lat), bearing, dist)
        assert spatial.contains(f, *p) == poly.covers(P(*p))


def test_a_long_narrow_corridor_builds_its_segment_grid_at_planning_not_in_the_search():
    """docs/decisions.md §24: a grid of many cells is a loop hold of ~100 ms even for two segments, so it is built
    when the query is planned (off the loop for a costly request); only a small grid waits for its first use."""
    from cds.core.spatial_testers import _NearSegments
    across = [((68.0, 8.0), (97.0, 35.0))]                      # two vertices across India, a 2 km corridor
    assert _NearSegments(across, 2000.0)._grid is not None
    short = [((77.0 + i / 100, 12.0), (77.0 + (i + 1) / 100, 12.01)) for i in range(10)]
    near = _NearSegments(short, 2000.0)
    assert near._grid is None
    assert near.any_within(77.05, 12.005) and near._grid is not None     # built on first use, then kept


def test_grid_cells_counts_what_the_segment_grid_files_at_its_first_cell_size():
    """The planner decides where a route plans from `grid_cells` (plain Python): it must count the entries of the
    grid's own numpy boxes, poles and antimeridian included."""
    import numpy as np
    from cds.core.spatial_testers import _first_cell, _spans, grid_cells, widened_boxes
    rng = np.random.default_rng(7)
    for d in (1.0, 100.0, 2000.0, 1e5, 2e6):
        for _ in range(40):
            wide = rng.random() < 0.5
            pts = (rng.uniform([-180, -89.9], [180, 89.9], size=(rng.integers(2, 8), 2)) if wide
                   else 77 + rng.normal(0, 0.3, size=(6, 2)))
            segs = list(zip(map(tuple, pts[:-1].tolist()), map(tuple, pts[1:].tolist())))
            arr = np.array([(a[0], a[1], b[0], b[1]) for a, b in segs])
            x0, y0, x1, y1, full = widened_boxes(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], d)
            part = ~full
            _gx, _gy, nx, ny = _spans(x0[part], y0[part], x1[part], y1[part], _first_cell(d))
            assert grid_cells(segs, d) == int((nx * ny).sum()) + int(full.sum()), (d, segs)


def test_grid_cells_reads_any_iterable_once():
    from cds.core.spatial_testers import grid_cells
    segs = [((77.0, 12.0), (77.3, 12.2)), ((77.3, 12.2), (79.0, 14.0))]
    assert grid_cells(iter(segs), 2000.0) == grid_cells(segs, 2000.0) > 0
    assert grid_cells([], 2000.0) == 0


def test_an_empty_multipoint_is_near_nothing():
    """`prepare` takes a point set's extent from its coordinates (not GEOS): none at all is NaN bounds, as GEOS's."""
    from shapely.geometry import MultiPoint

    p = spatial.prepare("dwithin", MultiPoint(), 1000.0)
    assert p.test(77.59, 12.97) is False
    assert math.isnan(p.bbox[0]) and math.isnan(p.bbox[2])
