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
from cds.core.geodesy import DEG, EARTH_R, reach_bbox, reach_dlat, reach_dlon, segment_distances_m
from cds.core.spatial import prepared
from cds.core.spatial_testers import segments_of

Masks = tuple[np.ndarray, np.ndarray]          # (surely satisfied, surely not)
Classifier = Callable[[np.ndarray, np.ndarray], Masks]

_REL, _ABS = 1e-9, 1e-3          # the margin: relative, and absolute in metres (as the embedded radius test)
MAX_PARTS = 64                   # points or segments of a geometry measured per station point (else no classifier)


def haversine_m(lon0: float, lat0: float, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Great-circle distances in metres from one point to many (NaN for missing coordinates)."""
    return 2 * EARTH_R * np.arcsin(np.minimum(1.0, np.sqrt(haversine_a(lon0, lat0, lon, lat))))


def haversine_a(lon0: float, lat0: float, lon: np.ndarray, lat: np.ndarray, coslat: np.ndarray | None = None
                ) -> np.ndarray:
    """haversine's `a` from one point to many, which orders them as their distances do (compare it with
    `half_chord` of a distance; NaN for missing coordinates). `coslat`: cos(lat) of the many, if known."""
    p0, p = lat0 * DEG, lat * DEG
    if coslat is None:
        coslat = np.cos(p)
    return np.sin((p - p0) / 2) ** 2 + math.cos(p0) * coslat * np.sin((lon - lon0) * DEG / 2) ** 2


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
    segs = _segments(geom)
    if segs is not None:
        ax, ay, bx, by = np.array(segs, dtype=np.float64).reshape(-1, 4).T

        def to_segments(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
            return segment_distances_m(lon[:, None], lat[:, None], ax, ay, bx, by).min(axis=1)
        return to_segments
    return None


def _segments(geom: object) -> list[tuple[tuple[float, float], tuple[float, float]]] | None:
    """A line geometry's segments ((ax, ay), (bx, by)), or None (not a line, or too many parts)."""
    if not isinstance(geom, (LineString, MultiLineString)):
        return None
    segs = segments_of(geom)
    if not segs or len(segs) > MAX_PARTS:
        return None
    return segs


def half_chord(d: float) -> float:
    """haversine's `a` at the distance `d` metres: a distance is <= d exactly when its `a` is <= this (both
    increase together up to half the circumference; up to rounding); -1 below 0 (nothing is that near), inf
    from half the circumference on (everything is; `a` may round a little above 1)."""
    if d < 0:
        return -1.0
    if d >= math.pi * EARTH_R:
        return math.inf
    return math.sin(d / (2 * EARTH_R)) ** 2


class _Segments:
    """`geodesy.segment_distance_m` to the segments whose widened box holds the point (the segments the exact
    test measures: `spatial_testers.widened_boxes`), for points whose longitude differs from every segment end
    by at most 180 degrees (no antimeridian wrap: the caller checks). Only the (point, segment) pairs in a box
    are measured, with per-segment terms computed once, as haversine's `a` (its square root and arcsine are
    increasing: the caller compares `a` with `half_chord` of its thresholds). The same formula up to rounding,
    far below the classifier's margin."""

    def __init__(self, segs: list[tuple[tuple[float, float], tuple[float, float]]], d: float) -> None:
        # Per segment its terms and its box, in plain Python (few segments: numpy's per-call cost would
        # dominate), then one array: one row per term, so a block fetches its pairs' terms with one index.
        # The boxes are `widened_boxes`' (`geodesy.reach_dlon` per segment, full width when it reaches a pole).
        dlat, rows = reach_dlat(d), []
        for (ax, ay), (bx, by) in segs:
            dx, dy = bx - ax, by - ay
            dlon = reach_dlon(d, max(abs(ay), abs(by)))
            wide = dlon >= 360.0
            rows.append((ax, ay, dx, dy, dx * dx, dy * dy, -180.0 if wide else min(ax, bx) - dlon,
                         min(ay, by) - dlat, 180.0 if wide else max(ax, bx) + dlon, max(ay, by) + dlat))
        cols = np.array(rows, dtype=np.float64).T
        self.terms = cols[:6]
        self.x0, self.y0, self.x1, self.y1 = cols[6:]
        point = (cols[2] == 0.0) & (cols[3] == 0.0)    # a zero-length segment: t = 0, as geodesy has it
        self.point = point if point.any() else None

    def pairs(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point row, haversine's `a` to the segment) for every (point, segment) pair in a segment's box."""
        lon_c, lat_c = lon[:, None], lat[:, None]
        rows, segs = np.nonzero((lon_c >= self.x0) & (lon_c <= self.x1) & (lat_c >= self.y0) & (lat_c <= self.y1))
        if not len(rows):
            return rows, np.zeros(0)
        plon, plat = lon[rows], lat[rows]
        k = np.cos(plat * DEG)
        k2 = k * k
        ax, ay, dx, dy, dx2, dy2 = self.terms[:, segs]
        # t of the closest point in the equirectangular projection centred on the point (geodesy's formula
        # with both terms multiplied out: -(a.d) = (p - a).d, |d|^2 = dx^2 k^2 + dy^2)
        u, v = plon - ax, plat - ay
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.clip((u * dx * k2 + v * dy) / (dx2 * k2 + dy2), 0.0, 1.0)
        if self.point is not None:
            t[self.point[segs]] = 0.0
        # the closest point q less the point p: q - p = a + d t - p
        ex, ey = dx * t - u, dy * t - v
        a = np.sin(ey * (DEG / 2)) ** 2 + k * np.cos((plat + ey) * DEG) * np.sin(ex * (DEG / 2)) ** 2
        return rows, a


def classifier(f: SpatialFilter) -> Classifier | None:
    """The vectorised form of one constraint, or None when it has none (see the module doc)."""
    p = prepared(f)
    if p.op != "dwithin":
        return None
    d = p.distance_m
    # the box the exact test rejects outside of first (a prepared dwithin's bbox, unless negated: None)
    x0, y0, x1, y1 = p.bbox if p.bbox is not None else reach_bbox(p.geometry, d)
    # Lines: only points in the box are measured (outside it the answer is "beyond" whatever the distance).
    # When the box spans at most 180 degrees of longitude and does not wrap, a point in it is never more than
    # 180 degrees from a segment end: the unwrapped form measures it.
    segs = _segments(p.geometry) if x1 - x0 <= 180.0 else None
    near = _Segments(segs, d).pairs if segs is not None else None
    measure = _nearest_m(p.geometry) if near is None else None
    if near is None and measure is None:
        return None
    inside, outside = d * (1 - _REL) - _ABS, d * (1 + _REL) + _ABS
    a_inside, a_outside = half_chord(inside), half_chord(outside)
    negate = p.negate

    def classify(lon: np.ndarray, lat: np.ndarray) -> Masks:
        with np.errstate(invalid="ignore"):
            s = lon + lat
            located = s == s                    # neither is NaN: no location is never a match, negated or not
            in_box = (lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)
            if measure is not None:
                dist = measure(lon, lat)
                within = in_box & (dist <= inside)
                beyond = located & (~in_box | (dist > outside))
            else:
                # a point is within when one of its pairs is, beyond unless one of them is not surely beyond
                rows, a = near(lon, lat)
                within = np.zeros(len(lon), bool)
                within[rows[a <= a_inside]] = True
                within &= in_box
                maybe = np.zeros(len(lon), bool)
                maybe[rows[a <= a_outside]] = True
                maybe &= in_box
                beyond = located & ~maybe
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
    if len(classify) == 1:          # the common case: its masks as they are
        return classify[0](lon, lat)
    yes = np.ones(len(lon), bool)
    no = np.zeros(len(lon), bool)
    for c in classify:
        y, n = c(lon, lat)
        yes &= y
        no |= n
    return yes, no
