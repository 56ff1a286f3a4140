"""Spatial constraints decided for many station points at once, where that is sure (docs/decisions.md §G).

`classifier(f)` gives, for the constraints that have a vectorised form (s_dwithin of points and of lines, also
negated), a function from lon/lat arrays to two masks: points that surely satisfy the constraint and points that
surely do not. "Surely" means by a margin far above the rounding differences between numpy's and Python's
trigonometry (the same formulas as `cds.core.geodesy`), so a point in either mask gets the answer
`cds.core.spatial.contains` would give; a point in neither (within about a millimetre of the edge, or without a
location) is left to `contains`. Everything else (areas, within/intersects) has no classifier: callers test it
per point as before.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from shapely.geometry import LineString, MultiLineString, MultiPoint, Point

from cds.core.query import SpatialFilter
from cds.core.geodesy import DEG, EARTH_R, reach_bbox, segment_distances_m
from cds.core.spatial import prepared
from cds.core.spatial_testers import segments_of

Masks = tuple[np.ndarray, np.ndarray]          # (surely satisfied, surely not)
Classifier = Callable[[np.ndarray, np.ndarray], Masks]

_REL, _ABS = 1e-9, 1e-3          # the margin: relative, and absolute in metres (as the embedded radius test)
MAX_PARTS = 64                   # points or segments of a geometry measured per station point (else no classifier)


def haversine_m(lon0: float, lat0: float, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Great-circle distances in metres from one point to many (NaN for missing coordinates)."""
    p0, p = lat0 * DEG, lat * DEG
    a = np.sin((p - p0) / 2) ** 2 + math.cos(p0) * np.cos(p) * np.sin((lon - lon0) * DEG / 2) ** 2
    return 2 * EARTH_R * np.arcsin(np.minimum(1.0, np.sqrt(a)))


def _nearest_m(geom: object) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """Distance from each point to the nearest part of a point or line geometry (numpy), or None."""
    if isinstance(geom, (Point, MultiPoint)):
        pts = [(p.x, p.y) for p in getattr(geom, "geoms", [geom])]
        if not pts or len(pts) > MAX_PARTS:
            return None

        def to_points(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
            out = haversine_m(pts[0][0], pts[0][1], lon, lat)
            for x, y in pts[1:]:
                out = np.minimum(out, haversine_m(x, y, lon, lat))
            return out
        return to_points
    if isinstance(geom, (LineString, MultiLineString)):
        segs = segments_of(geom)
        if not segs or len(segs) > MAX_PARTS:
            return None
        ax, ay, bx, by = (np.asarray(c, dtype=np.float64) for c in zip(*((a[0], a[1], b[0], b[1]) for a, b in segs)))

        def to_segments(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
            return segment_distances_m(lon[:, None], lat[:, None], ax, ay, bx, by).min(axis=1)
        return to_segments
    return None


def classifier(f: SpatialFilter) -> Classifier | None:
    """The vectorised form of one constraint, or None when it has none (see the module doc)."""
    p = prepared(f)
    if p.op != "dwithin":
        return None
    measure = _nearest_m(p.geometry)
    if measure is None:
        return None
    d = p.distance_m
    inside, outside = d * (1 - _REL) - _ABS, d * (1 + _REL) + _ABS
    x0, y0, x1, y1 = reach_bbox(p.geometry, d)             # the box the exact test rejects outside of first
    negate = p.negate

    def classify(lon: np.ndarray, lat: np.ndarray) -> Masks:
        with np.errstate(invalid="ignore"):
            located = ~(np.isnan(lon) | np.isnan(lat))  # no location: never a match, negated or not
            in_box = (lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)
            dist = measure(lon, lat)
            within = in_box & (dist <= inside)
            beyond = located & (~in_box | (dist > outside))
        return (beyond, within) if negate else (within, beyond)
    return classify


def classifiers(filters: tuple[SpatialFilter, ...]) -> list[Classifier] | None:
    """Classifiers for every constraint of a query, or None when one of them has none."""
    out = []
    for f in filters:
        c = classifier(f)
        if c is None:
            return None
        out.append(c)
    return out


def classify_all(classify: list[Classifier], lon: np.ndarray, lat: np.ndarray) -> Masks:
    """(surely every constraint satisfied, surely some constraint not) for each point."""
    yes = np.ones(len(lon), bool)
    no = np.zeros(len(lon), bool)
    for c in classify:
        y, n = c(lon, lat)
        yes &= y
        no |= n
    return yes, no
