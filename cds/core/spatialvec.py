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
from cds.core.spatial_testers import segments_of, widened_boxes

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
    segs = _segments(geom)
    if segs is not None:
        ax, ay, bx, by = segs

        def to_segments(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
            return segment_distances_m(lon[:, None], lat[:, None], ax, ay, bx, by).min(axis=1)
        return to_segments
    return None


def _segments(geom: object) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """A line geometry's segments as columns (ax, ay, bx, by), or None (not a line, or too many parts)."""
    if not isinstance(geom, (LineString, MultiLineString)):
        return None
    segs = segments_of(geom)
    if not segs or len(segs) > MAX_PARTS:
        return None
    ax, ay, bx, by = (np.asarray(c, dtype=np.float64) for c in zip(*((a[0], a[1], b[0], b[1]) for a, b in segs)))
    return ax, ay, bx, by


class _Segments:
    """`geodesy.segment_distances_m` to the nearest segment whose widened box holds the point (the segments the
    exact test measures: `spatial_testers.widened_boxes`; inf when there is none), for points whose longitude
    differs from every segment end by at most 180 degrees (no antimeridian wrap: the caller checks). Only the
    (point, segment) pairs in a box are measured, with per-segment terms computed once and haversine's square
    root and arcsine taken once per point, after the minimum (both are increasing). The same formula up to
    rounding, far below the classifier's margin."""

    def __init__(self, ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, d: float) -> None:
        dx, dy = bx - ax, by - ay
        self.ax, self.ay, self.dx, self.dy = ax, ay, dx, dy
        self.dx2, self.dy2 = dx * dx, dy * dy
        self.point = (dx == 0.0) & (dy == 0.0)         # a zero-length segment: t = 0, as geodesy has it
        self.x0, self.y0, self.x1, self.y1, _ = widened_boxes(ax, ay, bx, by, d)

    def distance_m(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        lon_c, lat_c = lon[:, None], lat[:, None]
        rows, segs = np.nonzero((lon_c >= self.x0) & (lon_c <= self.x1) & (lat_c >= self.y0) & (lat_c <= self.y1))
        out = np.full(len(lon), np.inf)
        if not len(rows):
            return out
        plon, plat = lon[rows], lat[rows]
        k = np.cos(plat * DEG)
        k2 = k * k
        ax, ay, dx, dy = self.ax[segs], self.ay[segs], self.dx[segs], self.dy[segs]
        # t of the closest point in the equirectangular projection centred on the point (geodesy's formula
        # with both terms multiplied out: -(a.d) = (p - a).d, |d|^2 = dx^2 k^2 + dy^2)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((plon - ax) * dx * k2 + (plat - ay) * dy) / (self.dx2[segs] * k2 + self.dy2[segs])
        t = np.where(self.point[segs], 0.0, np.clip(t, 0.0, 1.0))
        qx, qy = ax + dx * t, ay + dy * t
        a = np.sin((qy - plat) * (DEG / 2)) ** 2 + k * np.cos(qy * DEG) * np.sin((qx - plon) * (DEG / 2)) ** 2
        # pairs come row by row (np.nonzero's order): the smallest per point
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        out[rows[starts]] = 2 * EARTH_R * np.arcsin(np.minimum(1.0, np.sqrt(np.minimum.reduceat(a, starts))))
        return out


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
    near = _Segments(*segs, d).distance_m if segs is not None else None
    measure = _nearest_m(p.geometry) if near is None else None
    if near is None and measure is None:
        return None
    inside, outside = d * (1 - _REL) - _ABS, d * (1 + _REL) + _ABS
    negate = p.negate

    def classify(lon: np.ndarray, lat: np.ndarray) -> Masks:
        with np.errstate(invalid="ignore"):
            located = ~(np.isnan(lon) | np.isnan(lat))  # no location: never a match, negated or not
            in_box = (lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)
            if measure is not None:
                dist = measure(lon, lat)
                within = in_box & (dist <= inside)
                beyond = located & (~in_box | (dist > outside))
            else:
                sel = np.flatnonzero(in_box)
                dist = near(lon[sel], lat[sel])
                within = np.zeros(len(lon), bool)
                within[sel] = dist <= inside
                beyond = located & ~in_box
                beyond[sel] = dist > outside
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
