"""A CPO's stations and connectors, drawn from its own random stream: station sizes, placement (around cities,
weighted by population, or along corridors), parking, availability windows, status and connector types.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cds.demo.geography import CORRIDORS, INDIA_BBOX, KM_PER_DEG, cities, city_pool, corridor_ends, corridor_line
from cds.demo.market import (
    ALNUM, AMENITIES, AMENITY_P, ARCHETYPES, CITY_ARCHETYPES, CITY_PARKING, CORRIDOR_ARCHETYPES, CORRIDOR_PARKING,
    DAILY_WINDOWS, IST, PARKING_SITE, STATION_SIZES, STATUSES, STREETS, WINDOW_KINDS,
)
from cds.demo.planning import Cpo, weighted_choice


@dataclass(slots=True)
class Connector:
    item_id: str
    evse_id: str
    qr: str
    spec: str  # key of CONNECTORS
    active: bool
    status: str | None


@dataclass(slots=True)
class Station:
    id: str
    name: str
    lon: float
    lat: float
    anchor: tuple[float, float]  # (lon, lat) of the city centre (or the station itself on a corridor)
    city: str
    state: str
    corridor: int | None
    archetype: str
    parking: str
    street: str
    amenities: list[str]
    windows: list[tuple[str, str]]
    reservation: bool
    rating: float
    rating_count: int
    connectors: list[Connector] = field(default_factory=list)
    catalog: int = 0


class _IdMaker:
    """Fixed-width base-62 ids that look random yet are unique: an affine bijection of a counter mod 62^width."""

    __slots__ = ("width", "mod", "a", "b", "n")

    def __init__(self, rng: random.Random, width: int):
        self.width, self.mod, self.n = width, 62**width, 0
        a = rng.randrange(self.mod) | 1  # odd and not a multiple of 31: coprime with 62^width
        self.a, self.b = (a + 2 if a % 31 == 0 else a), rng.randrange(self.mod)

    def __call__(self) -> str:
        v, self.n = (self.n * self.a + self.b) % self.mod, self.n + 1
        out = []
        for _ in range(self.width):
            v, r = divmod(v, 62)
            out.append(ALNUM[r])
        return "".join(out)


def _station_sizes(total: int, rng: random.Random) -> list[int]:
    sizes, rem = [], total
    keys, weights = list(STATION_SIZES), list(STATION_SIZES.values())
    while rem > 0:
        k = rng.choices(keys, weights=weights)[0]
        if k >= rem:
            k = rem
        elif rem - k == 1:  # never leave a single connector behind
            k = k - 1 if k > 2 else k + 1
        sizes.append(k)
        rem -= k
    return sizes


def iso_time(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _place(rng: random.Random, cpo: Cpo) -> tuple[float, float, tuple[float, float], str, str, int | None, str]:
    """(lon, lat, anchor, city, state code, corridor, street) of one new station."""
    c = cities()
    if cpo.corridors and rng.random() < cpo.corridor_share:
        k = rng.choice(cpo.corridors)
        (lon_a, lat_a), (lon_b, lat_b) = corridor_line(k)
        t = rng.uniform(0.03, 0.97)
        lon, lat = lon_a + t * (lon_b - lon_a), lat_a + t * (lat_b - lat_a)
        # A small sideways offset: roadside, but always within ~1.5 km of the line.
        dx, dy = (lon_b - lon_a) * KM_PER_DEG * math.cos(math.radians(lat)), (lat_b - lat_a) * KM_PER_DEG
        length = math.hypot(dx, dy)
        off = max(-1.5, min(1.5, rng.gauss(0, 0.4)))
        lon += off * -dy / length / (KM_PER_DEG * math.cos(math.radians(lat)))
        lat += off * dx / length / KM_PER_DEG
        near = corridor_ends(k)[0 if t < 0.5 else 1]
        street = f"{CORRIDORS[k].road} km {round(t * length)}"
        return lon, lat, (lon, lat), c.name[near], c.state[near], k, street
    idx, cum = city_pool(cpo.states)
    i = rng.choices(idx, cum_weights=cum)[0]
    sigma = 1.0 + 2.5 * math.sqrt(c.pop[i] / 1e6)  # km: ~10 km in Mumbai, ~1.3 km in a town of 15k
    dx = max(-2.5 * sigma, min(2.5 * sigma, rng.gauss(0, sigma)))
    dy = max(-2.5 * sigma, min(2.5 * sigma, rng.gauss(0, sigma)))
    lat = min(INDIA_BBOX[3], max(INDIA_BBOX[1], c.lat[i] + dy / KM_PER_DEG))
    lon = min(INDIA_BBOX[2], max(INDIA_BBOX[0], c.lon[i] + dx / (KM_PER_DEG * math.cos(math.radians(lat)))))
    return lon, lat, (c.lon[i], c.lat[i]), c.name[i], c.state[i], None, rng.choice(STREETS)


def _windows(rng: random.Random, parking: str, now: datetime) -> list[tuple[str, str]]:
    kind = "daily" if parking == "Mall" else weighted_choice(rng, WINDOW_KINDS)
    if kind == "24x7":
        return []
    start, end = ("10:00:00", "22:00:00") if parking == "Mall" else rng.choice(DAILY_WINDOWS)
    if kind == "daily":
        return [(start, end)]
    # UBC style: full date-times in startTime/endTime, the next three local days, in UTC.
    day = now.astimezone(IST).date()
    out = []
    for d in range(3):
        base = datetime(day.year, day.month, day.day, tzinfo=IST) + timedelta(days=d)
        out.append((iso_time(base + timedelta(hours=int(start[:2]))), iso_time(base + timedelta(hours=int(end[:2])))))
    return out


def cpo_stations(cpo: Cpo, seed: int, now: datetime) -> list[Station]:
    rng = random.Random(f"ubc-loadtest:{seed}:stations:{cpo.index}")
    code, host = cpo.bpp.code, cpo.bpp.subscriber_id
    out: list[Station] = []
    # UBC connector id segments: station 10, charge point 10, connector 14 characters (QR standard §3).
    station_id, point_id, connector_id = _IdMaker(rng, 10), _IdMaker(rng, 10), _IdMaker(rng, 14)
    for size in _station_sizes(cpo.bpp.connectors, rng):
        lon, lat, anchor, city, state, corridor, street = _place(rng, cpo)
        on_road = corridor is not None
        arche = weighted_choice(rng, CORRIDOR_ARCHETYPES if on_road else CITY_ARCHETYPES)
        parking = weighted_choice(rng, CORRIDOR_PARKING if on_road else CITY_PARKING)
        amen = [a for a, p in zip(AMENITIES, AMENITY_P[on_road]) if rng.random() < p]
        where = f"{CORRIDORS[corridor].road} near {city}" if on_road else city
        sid = station_id()
        st = Station(sid, f"{cpo.brand} {PARKING_SITE[parking]}, {where}", round(lon, 6), round(lat, 6),
                     (round(anchor[0], 6), round(anchor[1], 6)), city, state, corridor, arche, parking, street, amen,
                     _windows(rng, parking, now),
                     rng.random() < cpo.reservation_rate * (0.5 if arche == "lev_hub" else 1.0),
                     round(rng.uniform(3.4, 4.9), 1), rng.randint(0, 400))
        mix = ARCHETYPES[arche]
        keys, weights = list(mix), list(mix.values())
        left, p_in_station = size, 0
        while left:
            per_point = min(left, rng.choice((1, 2, 2, 3)))
            pid = point_id()
            p_in_station += 1
            for _ in range(per_point):
                cid = connector_id()
                status = weighted_choice(rng, STATUSES) if cpo.live_status else None
                st.connectors.append(Connector(
                    f"IND*{code}*{sid}*{pid}*{cid}", f"IN*{code}*E{sid}*{p_in_station}",
                    f"https://qr.{host}/c/{cid}", rng.choices(keys, weights=weights)[0], rng.random() > 0.01, status))
            left -= per_point
        out.append(st)
    if cpo.bpp.catalogs > 1:  # regional catalogs: stations ordered by state, cut into equal connector chunks
        out.sort(key=lambda s: (s.state, s.city, s.id))
        per, cum = math.ceil(cpo.bpp.connectors / cpo.bpp.catalogs), 0
        for st in out:
            st.catalog = min(cpo.bpp.catalogs - 1, cum // per)
            cum += len(st.connectors)
    return out
