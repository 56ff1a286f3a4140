"""indexer.embedded.narrow: the route's cell pruning keeps every cell shapely would (a superset loses no match)."""

from __future__ import annotations

import math
import random

import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString

from cds.core.spatial_testers import segments_of
from indexer.embedded.narrow import _near_segments


def test_route_cells_kept_include_every_cell_within_reach_of_the_route():
    r = random.Random(5)
    g = 0.05
    for case in range(40):
        pts = [(77 + r.uniform(0, 1), 12 + r.uniform(0, 1)) for _ in range(r.randint(2, 8))]
        if case % 5 == 0:
            pts.insert(1, pts[0])                         # a zero-length segment
        geom = LineString(pts) if case % 3 else MultiLineString([pts, [(77.2, 12.9), (77.9, 12.1)]])
        thr = r.choice([0.0, 0.01, 0.03, 0.08])
        x0 = 76.8 + g * np.arange(32).repeat(32)
        y0 = 11.8 + g * np.tile(np.arange(32), 32)
        want = shapely.dwithin(shapely.box(x0, y0, x0 + g, y0 + g), geom, thr)
        got = _near_segments(x0 + g / 2, y0 + g / 2, segments_of(geom), thr + g * math.sqrt(0.5))
        assert want.any() and got[want].all()
        # and it prunes: most far cells go
        assert got.sum() <= want.sum() + 4 * len(segments_of(geom)) * (2 * thr / g + 3) + 8
