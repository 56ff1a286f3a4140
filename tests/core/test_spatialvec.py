"""cds.core.spatialvec: a vectorised decision is only ever taken where `spatial.contains` gives the same answer."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from shapely.geometry import LineString, MultiLineString, MultiPoint, Point, Polygon

from cds.core import geodesy, spatial, spatialvec
from cds.core.query import SpatialFilter
from cds.core.spatial_testers import widened_boxes

GEOMS = {
    "point": Point(77.59, 12.97),
    "points": MultiPoint([(77.59, 12.97), (77.7, 13.05), (77.4, 12.9)]),
    "route": LineString([(77.5, 12.9), (77.8, 13.1), (78.2, 13.0), (78.6, 13.4)]),
    "routes": MultiLineString([[(77.5, 12.9), (77.8, 13.1)], [(78.0, 12.5), (78.1, 12.2)]]),
    "antimeridian": LineString([(179.8, -16.5), (-179.9, -16.2)]),
    "route with a stop": LineString([(77.5, 12.9), (77.8, 13.1), (77.8, 13.1), (78.2, 13.0)]),
}


def _points(geom, d: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points around the geometry, many of them within metres of the edge of its d-corridor."""
    r = random.Random(seed)
    x0, y0, x1, y1 = geom.bounds
    pad = max(d / 111_000 * 1.5, 0.01)
    lon, lat = [], []
    for _ in range(n):
        x, y = r.uniform(x0 - pad, x1 + pad), r.uniform(y0 - pad, y1 + pad)
        lon.append(((x + 180.0) % 360.0) - 180.0)
        lat.append(y)
    # on the edge: exactly d (as the exact test measures it) from a vertex, east of it
    for vx, vy in [c for g in getattr(geom, "geoms", [geom]) for c in (g.coords if hasattr(g, "coords") else [])][:4]:
        dlon = math.degrees(d / (geodesy.EARTH_R * math.cos(math.radians(vy))))
        for eps in (-1e-7, 0.0, 1e-7):
            lon.append(vx + dlon + eps)
            lat.append(vy)
    lon += [math.nan, 77.6]
    lat += [12.9, math.nan]
    return np.array(lon), np.array(lat)


@pytest.mark.parametrize("name", sorted(GEOMS))
@pytest.mark.parametrize("negate", [False, True])
def test_decided_points_agree_with_the_exact_test(name, negate):
    geom = GEOMS[name]
    for d in (0.0, 800.0, 5_000.0, 40_000.0):
        f = spatial.prepare("dwithin", geom, d, negate=negate)
        classify = spatialvec.classifier(f)
        assert classify is not None
        lon, lat = _points(geom, d, 600, seed=int(d))
        yes, no = classify(lon, lat)
        assert not (yes & no).any()
        exact = np.array([spatial.contains(f, None if math.isnan(x) else x, None if math.isnan(y) else y)
                          for x, y in zip(lon.tolist(), lat.tolist())])
        assert (exact[yes]).all() and not (exact[no]).any()
        # and it decides almost everything (else it would save nothing)
        assert (yes | no).mean() > 0.9 or d == 0.0


def test_points_without_a_location_are_never_decided():
    f = spatial.prepare("dwithin", GEOMS["route"], 5_000.0, negate=True)
    yes, no = spatialvec.classifier(f)(np.array([np.nan, 77.6]), np.array([12.9, np.nan]))
    assert not yes.any() and not no.any()


def test_constraints_without_a_vectorised_form_have_no_classifier():
    area = Polygon([(77.5, 12.9), (77.8, 12.9), (77.8, 13.1)])
    assert spatialvec.classifier(spatial.prepare("within", area)) is None
    assert spatialvec.classifier(spatial.prepare("dwithin", area, 1_000.0)) is None
    long_route = LineString([(77 + i * 0.01, 12 + (i % 2) * 0.01) for i in range(spatialvec.MAX_PARTS + 2)])
    assert spatialvec.classifier(spatial.prepare("dwithin", long_route, 1_000.0)) is None
    route = spatial.prepare("dwithin", GEOMS["route"], 1_000.0)
    assert spatialvec.classifiers((route, spatial.prepare("within", area))) is None
    # a plain (unprepared) filter is prepared on the way, as `spatial.contains` does
    plain = SpatialFilter(op="dwithin", geometry=GEOMS["point"], distance_m=1_000.0)
    assert spatialvec.classifier(plain) is not None


def test_every_constraint_must_hold_for_sure_and_one_sure_failure_is_enough():
    near = spatial.prepare("dwithin", GEOMS["point"], 10_000.0)
    far = spatial.prepare("dwithin", Point(78.5, 13.5), 10_000.0)
    lon, lat = np.array([77.59, 78.5]), np.array([12.97, 13.5])
    yes, no = spatialvec.classify_all(spatialvec.classifiers((near, far)), lon, lat)
    assert not yes.any() and no.all()
    yes, no = spatialvec.classify_all(spatialvec.classifiers((near,)), lon, lat)
    assert yes.tolist() == [True, False] and no.tolist() == [False, True]


@pytest.mark.parametrize("name", ["route", "routes", "route with a stop"])
def test_the_unwrapped_segment_distance_is_geodesys_up_to_rounding(name):
    """The per-point form the classifier uses for boxes narrower than 180 degrees (`_Segments`) measures what
    `geodesy.segment_distance_m` does to the nearest segment whenever that one is within reach (the segments
    it skips, outside their widened boxes, are farther than the distance), on the segment ends and far away."""
    geom = GEOMS[name]
    d = 5_000.0
    near = spatialvec._Segments(spatialvec._segments(geom), d)
    lon, lat = _points(geom, d, 400, seed=7)
    ends = [c for g in getattr(geom, "geoms", [geom]) for c in g.coords]
    lon = np.concatenate([lon[:-2], [x for x, _ in ends], [x + 0.3 for x, _ in ends]])
    lat = np.concatenate([lat[:-2], [y for _, y in ends], [y for _, y in ends]])
    rows, a = near.pairs(lon, lat)
    nearest = np.full(len(lon), np.inf)
    np.minimum.at(nearest, rows, a)
    boxed = nearest < np.inf                                          # some segment's box holds the point
    got = np.full(len(lon), np.inf)
    got[boxed] = 2 * geodesy.EARTH_R * np.arcsin(np.sqrt(np.minimum(1.0, nearest[boxed])))
    want = np.array([min(geodesy.segment_distance_m(x, y, a, b) for a, b in spatialvec.segments_of(geom))
                     for x, y in zip(lon.tolist(), lat.tolist())])
    reach = want <= d
    assert reach.any() and not reach.all()
    assert np.allclose(got[reach], want[reach], rtol=1e-10, atol=1e-6)
    assert (got[~reach] > d).all()
    assert (nearest[~reach] > spatialvec.half_chord(d)).all()


@pytest.mark.parametrize("lat", [12.9, 89.95])
def test_segment_boxes_are_the_exact_tests_boxes(lat):
    """`_Segments` builds its boxes in plain Python: the boxes `spatial_testers.widened_boxes` gives (full width
    where a box reaches a pole), up to rounding."""
    segs = [((77.5, lat - 0.01), (77.8, lat)), ((77.8, lat), (77.8, lat)), ((77.8, lat), (77.2, lat - 0.02))]
    near = spatialvec._Segments(segs, 5_000.0)
    ax, ay, bx, by = np.array(segs, dtype=np.float64).reshape(-1, 4).T
    want = widened_boxes(ax, ay, bx, by, 5_000.0)[:4]
    for got, exp in zip((near.x0, near.y0, near.x1, near.y1), want):
        assert np.allclose(got, exp, rtol=0, atol=1e-12)
