"""cds.core.geodesy: distances on the matcher's sphere agree with an independent formula (the spherical law of
cosines) on known city pairs."""

from __future__ import annotations

from cds.core import geodesy
from tests.core.test_spatial import BENGALURU, DELHI, MUMBAI, MYSURU, cosines_m



def test_known_city_distances() -> None:
    d = geodesy.haversine_m(*BENGALURU, *MYSURU)
    assert 125_000 < d < 129_000                          # ≈126-128 km great-circle
    assert abs(d - cosines_m(BENGALURU, MYSURU)) < 1.0
    d2 = geodesy.haversine_m(*DELHI, *MUMBAI)
    assert 1_140_000 < d2 < 1_160_000
    assert abs(d2 - cosines_m(DELHI, MUMBAI)) < 1.0
