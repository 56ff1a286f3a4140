"""Deterministic India-wide EV-charging network for load tests and benchmarks (docs/decisions.md §G).

    net = generate_network(100_000, seed=42)
    for bpp, body in net.publish_payloads(): ...      # catalog_publish requests, dialect A, < 8 MiB each
    net.registry_records()                             # static registry file (BPPs + the load-test BAP)
    net.query_mix(1000, seed=1)                        # discover bodies: radius, QR, time window, route

Shape: exactly the UBC publish example (`tests/fixtures/UBC_catalog_publish_ev-charging-catalog-publish.json`):
one item per connector, ChargingService attributes with `chargingStation.serviceLocation.geo` [lon, lat],
offers referencing items. Placement: stations around the GeoNames cities of `data/` (weight ∝ population,
Gaussian jitter whose spread grows with city size) plus a share along highway corridors. One BPP per CPO;
CPO sizes follow a Zipf-like market share; big CPOs split into several regional catalogs so a catalog (and
a publish request) stays far below the publish body limit.

Determinism: everything derives from `seed` and `now` (default: today 00:00 UTC, so runs on one day are
byte-identical). Each CPO has its own random streams, so catalogs are generated one CPO at a time
(`iter_catalogs`) and 1M connectors never have to be held in memory at once.
Returned dicts share constant sub-objects (provider, station location, windows): treat them as read-only.

CLI: `python -m cds.demo.generator --connectors 100000 --seed 42 --out DIR` writes `registry.json` (static
registry file), `participants.json` (test key seeds of the BAP and BPPs), `publish/NNNNN-cpo-XXX.json` (bodies;
ids from the seed, timestamp = `now`: re-stamp before signing), `queries.jsonl` (`{"kind", "body"}` per line)
and `manifest.json` (counts, timings).

Measured on the 2-core dev VM (CPU seconds, the VM was shared, load average ~9, so wall times were 2-3x):
generation only (`iter_catalogs`) 100k connectors ≈ 3 s, 1M ≈ 30 s; the whole CLI (plus serialising and
writing 245 MB / 2.3 GB of publish files and 10k queries) 100k ≈ 6.5 s (5.6 s wall on a quiet machine),
1M ≈ 53 s CPU / 120 s wall, peak RSS 110 MB / 490 MB.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import gc
import hashlib
import math
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import nacl.signing
import orjson

DOMAIN = "beckn.one:deg:ev-charging"
_SPEC = "https://raw.githubusercontent.com/beckn/protocol-specifications-v2/refs/heads/core-v2.0.0-rc/schema"
CORE_CONTEXT = f"{_SPEC}/core/v2/context.jsonld"
SERVICE_CONTEXT = f"{_SPEC}/EvChargingService/v1/context.jsonld"
OFFER_CONTEXT = f"{_SPEC}/EvChargingOffer/v1/context.jsonld"
UBC_GEO_TARGET = "$['beckn:itemAttributes.chargingStation.serviceLocation.geo']"
AVAILABLE_AT_TARGET = "$['beckn:availableAt'][*]['geo']"
INDIA_BBOX = (68.0, 6.5, 97.5, 37.5)  # lon_min, lat_min, lon_max, lat_max
IST = timezone(timedelta(hours=5, minutes=30))
MAX_PUBLISH_BYTES = 8 * 1024 * 1024
MAX_CATALOG_CONNECTORS = 2000  # ≈ 5 MB of JSON: one catalog always fits one publish request
MAX_CONNECTORS = 5_000_000
MAX_CPOS = 10_000
MAX_QUERIES = 1_000_000
KM_PER_DEG = 111.32
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class ConnectorSpec(NamedTuple):
    connector_type: str
    kw: float
    power_type: str
    connector_format: str
    vehicles: tuple[str, ...]
    min_kw: float
    title: str


LEV = ("2-WHEELER", "3-WHEELER")
CAR = ("4-WHEELER",)
# Connector/power mix from CEEW's plug list, OCM samples and the UBC examples (ev-schema §7).
CONNECTORS: dict[str, ConnectorSpec] = {
    "AC-001/3.3": ConnectorSpec("AC-001", 3.3, "AC_SINGLE_PHASE", "SOCKET", LEV, 0.5,
                                "LEV AC Charger - Bharat AC-001 (3.3kW)"),
    "Type6/3.3": ConnectorSpec("Type6", 3.3, "AC_SINGLE_PHASE", "CABLE", LEV, 0.5, "LEV AC Charger - Type 6 (3.3kW)"),
    "15A/3.3": ConnectorSpec("15A", 3.3, "AC_SINGLE_PHASE", "SOCKET", LEV, 0.5, "LEV AC Socket - 15A (3.3kW)"),
    "Type2/7.4": ConnectorSpec("Type2", 7.4, "AC_SINGLE_PHASE", "SOCKET", CAR, 1.4, "AC Charger - Type 2 (7.4kW)"),
    "Type2/11": ConnectorSpec("Type2", 11, "AC_3_PHASE", "SOCKET", CAR, 1.4, "AC Charger - Type 2 (11kW)"),
    "Type2/22": ConnectorSpec("Type2", 22, "AC_3_PHASE", "SOCKET", CAR, 3, "AC Fast Charger - Type 2 (22kW)"),
    "DC-001/15": ConnectorSpec("DC-001", 15, "DC", "CABLE", CAR, 2, "DC Charger - Bharat DC-001 (15kW)"),
    "CCS2/30": ConnectorSpec("CCS2", 30, "DC", "CABLE", CAR, 5, "DC Fast Charger - CCS2 (30kW)"),
    "CCS2/50": ConnectorSpec("CCS2", 50, "DC", "CABLE", CAR, 5, "DC Fast Charger - CCS2 (50kW)"),
    "CCS2/60": ConnectorSpec("CCS2", 60, "DC", "CABLE", CAR, 5, "DC Fast Charger - CCS2 (60kW)"),
    "CCS2/120": ConnectorSpec("CCS2", 120, "DC", "CABLE", CAR, 10, "DC Fast Charger - CCS2 (120kW)"),
    "CCS2/150": ConnectorSpec("CCS2", 150, "DC", "CABLE", CAR, 10, "DC Fast Charger - CCS2 (150kW)"),
    "CCS2/240": ConnectorSpec("CCS2", 240, "DC", "CABLE", CAR, 20, "Ultra-Fast Charger - CCS2 (240kW)"),
    "CCS2/360": ConnectorSpec("CCS2", 360, "DC", "CABLE", CAR, 20, "Ultra-Fast Charger - CCS2 (360kW)"),
    "CHAdeMO/50": ConnectorSpec("CHAdeMO", 50, "DC", "CABLE", CAR, 5, "DC Fast Charger - CHAdeMO (50kW)"),
}
# A station is one archetype; each of its connectors is drawn from the archetype's mix.
ARCHETYPES: dict[str, dict[str, float]] = {
    "lev_hub": {"AC-001/3.3": 0.4, "Type6/3.3": 0.3, "15A/3.3": 0.3},
    "ac_destination": {"Type2/7.4": 0.35, "Type2/11": 0.25, "Type2/22": 0.3, "AC-001/3.3": 0.1},
    "dc_city": {"CCS2/30": 0.15, "CCS2/50": 0.2, "CCS2/60": 0.25, "CHAdeMO/50": 0.1, "Type2/22": 0.2, "DC-001/15": 0.1},
    "dc_hub": {"CCS2/60": 0.2, "CCS2/120": 0.3, "CCS2/150": 0.3, "CCS2/240": 0.1, "CCS2/360": 0.05, "CHAdeMO/50": 0.05},
    "bharat": {"DC-001/15": 0.5, "AC-001/3.3": 0.5},
}
CITY_ARCHETYPES = {"lev_hub": 0.30, "ac_destination": 0.25, "dc_city": 0.30, "dc_hub": 0.07, "bharat": 0.08}
CORRIDOR_ARCHETYPES = {"lev_hub": 0.05, "ac_destination": 0.10, "dc_city": 0.35, "dc_hub": 0.45, "bharat": 0.05}
STATION_SIZES = {2: 0.2, 3: 0.18, 4: 0.16, 5: 0.12, 6: 0.1, 7: 0.08, 8: 0.06, 9: 0.05, 10: 0.05}


class Corridor(NamedTuple):
    a: str
    b: str
    road: str


CORRIDORS = (
    Corridor("Mumbai", "Pune", "Mumbai-Pune Expressway"), Corridor("Delhi", "Jaipur", "NH48"),
    Corridor("Bengaluru", "Chennai", "NH48"), Corridor("Bengaluru", "Mysuru", "NH275"),
    Corridor("Delhi", "Agra", "Yamuna Expressway"), Corridor("Chennai", "Puducherry", "East Coast Road"),
    Corridor("Hyderabad", "Vijayawada", "NH65"), Corridor("Ahmedabad", "Vadodara", "NE1 Expressway"),
    Corridor("Mumbai", "Nashik", "NH160"), Corridor("Delhi", "Chandigarh", "NH44"),
    Corridor("Kolkata", "Durgapur", "NH19"), Corridor("Mumbai", "Surat", "NH48"),
)
# GeoNames admin1 codes of India.
STATES = {
    "01": "Andaman and Nicobar Islands", "02": "Andhra Pradesh", "03": "Assam", "05": "Chandigarh", "07": "Delhi",
    "09": "Gujarat", "10": "Haryana", "11": "Himachal Pradesh", "12": "Jammu and Kashmir", "13": "Kerala",
    "16": "Maharashtra", "17": "Manipur", "18": "Meghalaya", "19": "Karnataka", "20": "Nagaland", "21": "Odisha",
    "22": "Puducherry", "23": "Punjab", "24": "Rajasthan", "25": "Tamil Nadu", "26": "Tripura", "28": "West Bengal",
    "29": "Sikkim", "30": "Arunachal Pradesh", "31": "Mizoram", "33": "Goa", "34": "Bihar", "35": "Madhya Pradesh",
    "36": "Uttar Pradesh", "37": "Chhattisgarh", "38": "Jharkhand", "39": "Uttarakhand", "40": "Telangana",
    "41": "Ladakh", "52": "Dadra and Nagar Haveli and Daman and Diu",
}
_BRAND_A = ("Volt", "Urja", "Shakti", "Tez", "Prana", "Surya", "Vayu", "Jyoti", "Amper", "Ojas", "Neel", "Harit",
            "Chakra", "Veer", "Pavan", "Agni", "Indra", "Disha", "Kiran", "Nova", "Zap", "Rapid", "Swift", "Evolve",
            "Elec", "Spark", "Charj", "Plug", "Orbit", "Metro")
_BRAND_B = ("Grid", "Charge", "Power", "Mobility", "EV", "Plug", "Point", "Energy", "Hub", "Go", "Drive", "Way",
            "Volt", "Link", "Flow", "Path", "Station", "Dock", "Circuit", "Motion")
_LEGAL = ("Pvt Ltd", "Ltd", "LLP", "Energy Pvt Ltd", "Mobility Pvt Ltd")
_PARKING_SITE = {"OnStreet": "Street Charging", "OffStreet": "Charging Hub", "Basement": "Parking", "Mall": "Mall",
                 "FuelStation": "Fuel Station", "Office": "Tech Park", "Hotel": "Hotel"}
CITY_PARKING = {"OnStreet": 0.15, "OffStreet": 0.25, "Basement": 0.1, "Mall": 0.15, "FuelStation": 0.15,
                "Office": 0.12, "Hotel": 0.08}
CORRIDOR_PARKING = {"FuelStation": 0.5, "OffStreet": 0.25, "Hotel": 0.2, "OnStreet": 0.05}
_STREETS = ("MG Road", "Ring Road", "Station Road", "Main Road", "Link Road", "Market Road", "Church Street",
            "Nehru Road", "Gandhi Road", "Airport Road", "College Road", "Lake Road")
_AMENITIES = ("RESTAURANT", "RESTROOM", "WI-FI", "PARKING")
_AMENITY_P = {False: (0.35, 0.5, 0.3, 0.6), True: (0.7, 0.85, 0.25, 0.7)}  # by on-corridor
DAILY_WINDOWS = (("06:00:00", "22:00:00"), ("08:00:00", "20:00:00"), ("07:00:00", "23:00:00"),
                 ("09:00:00", "21:00:00"), ("10:00:00", "22:00:00"))
WINDOW_KINDS = {"24x7": 0.55, "daily": 0.30, "dated": 0.15}  # 24x7 items carry no availabilityWindow
STATUSES = {"Available": 0.7, "Occupied": 0.22, "OutOfService": 0.08}
PAYMENTS = (("UPI", 1.0), ("CREDIT_CARD", 0.7), ("DEBIT_CARD", 0.6), ("WALLET", 0.5), ("BANK_TRANSFER", 0.15),
            ("CASH", 0.1))
QUERY_KINDS = {"radius": 0.4, "qr": 0.25, "time_window": 0.2, "route": 0.15}
POWER_STEPS = (3, 7, 11, 22, 30, 50, 60, 100, 120, 150, 240)
_KWH = {"unitText": "Kilowatt Hour", "unitCode": "KWH", "unitQuantity": 1}
_MIN = {"unitText": "minute", "unitCode": "MIN", "unitQuantity": 1}
_CATEGORY = {"@type": "schema:CategoryCode", "schema:codeValue": "ev-charging", "schema:name": "EV Charging"}


def charging_speed(kw: float) -> str:
    """Marketing band, consistent with the UBC examples (22 kW AC NORMAL, 60 kW FAST, 120 kW ULTRAFAST)."""
    return "SLOW" if kw < 7 else "NORMAL" if kw < 30 else "FAST" if kw < 100 else "ULTRAFAST"


# ---------------------------------------------------------------- participants


def _keypair(seed: int, who: str) -> tuple[str, str]:
    raw = hashlib.sha256(f"ubc-loadtest:{seed}:key:{who}".encode()).digest()
    pub = nacl.signing.SigningKey(raw).verify_key.encode()
    return base64.b64encode(raw).decode(), base64.b64encode(pub).decode()


def _key_id(seed: int, who: str) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(f"ubc-loadtest:{seed}:kid:{who}".encode()).digest()[:16], version=4))


class BppSpec(msgspec.Struct, frozen=True):
    """One CPO = one BPP. `seed_b64` is the base64 32-byte Ed25519 seed (test keys only)."""

    subscriber_id: str
    url: str
    key_id: str
    seed_b64: str
    public_key_b64: str
    provider_id: str
    name: str
    code: str  # the 3-character operator id of the UBC connector id
    connectors: int
    catalogs: int

    def signing_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(base64.b64decode(self.seed_b64))


class BapSpec(msgspec.Struct, frozen=True):
    """The load-test BAP that signs discover requests."""

    subscriber_id: str
    url: str
    key_id: str
    seed_b64: str
    public_key_b64: str

    def signing_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(base64.b64decode(self.seed_b64))


# ---------------------------------------------------------------- reference data


class _Cities(NamedTuple):
    name: list[str]
    lat: list[float]
    lon: list[float]
    pop: list[int]
    state: list[str]


@cache
def cities() -> _Cities:
    """GeoNames Indian places with population ≥ 15,000 (package data, CC BY 4.0)."""
    text = resources.files("cds.demo").joinpath("cities/in_cities_geonames_pop15000.csv").read_text("utf-8")
    c = _Cities([], [], [], [], [])
    for row in csv.DictReader(text.splitlines()):
        c.name.append(row["name"])
        c.lat.append(float(row["latitude"]))
        c.lon.append(float(row["longitude"]))
        c.pop.append(int(row["population"]))
        c.state.append(row["admin1code"])
    return c


@cache
def _city_pool(states: tuple[str, ...] | None) -> tuple[list[int], list[float]]:
    """City indices of the given states (None = all) with cumulative population weights."""
    c = cities()
    idx = [i for i in range(len(c.name)) if states is None or c.state[i] in states]
    cum, total = [], 0.0
    for i in idx:
        total += c.pop[i]
        cum.append(total)
    return idx, cum


@cache
def _corridor_ends(k: int) -> tuple[int, int]:
    c = cities()
    return c.name.index(CORRIDORS[k].a), c.name.index(CORRIDORS[k].b)


def corridor_line(k: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """The corridor's straight line as ((lon, lat), (lon, lat))."""
    c, (a, b) = cities(), _corridor_ends(k)
    return (c.lon[a], c.lat[a]), (c.lon[b], c.lat[b])


# ---------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class _Cpo:
    index: int
    bpp: BppSpec
    brand: str
    states: tuple[str, ...] | None  # None = national
    corridors: tuple[int, ...]
    corridor_share: float
    live_status: bool
    payments: tuple[str, ...]
    price_factor: float
    reservation_rate: float


def _apportion(total: int, weights: list[float], minimum: int) -> list[int]:
    """Integer shares summing to `total`, each ≥ `minimum` (largest-remainder method)."""
    rest = total - minimum * len(weights)
    w = sum(weights)
    exact = [rest * x / w for x in weights]
    out = [minimum + int(e) for e in exact]
    for i in sorted(range(len(weights)), key=lambda i: (-(exact[i] - int(exact[i])), i))[: total - sum(out)]:
        out[i] += 1
    return out


def _wchoice(rng: random.Random, table: dict[str, float]) -> Any:
    return rng.choices(list(table), weights=list(table.values()))[0]


def _code(a: str, b: str, used: set[str], spare: Iterator[str]) -> str:
    """A unique 3-character operator id: brand initials plus a letter/digit, else the next spare code."""
    for cand in (a[0] + b[0] + ch for ch in _ALNUM[10:36] + _ALNUM[:10]):
        if cand not in used:
            return cand
    return next(c for c in spare if c not in used)


def _plan(connectors: int, seed: int, cpos: int | None) -> tuple[list[_Cpo], BapSpec]:
    rng = random.Random(f"ubc-loadtest:{seed}:plan")
    n = cpos if cpos is not None else min(600, max(5, round(connectors / 400)))
    n = max(1, min(n, connectors // 2))
    allot = _apportion(connectors, [(i + 1) ** -0.85 for i in range(n)], min(2, connectors))
    c = cities()
    state_pop: dict[str, int] = {}
    for s, p in zip(c.state, c.pop):
        state_pop[s] = state_pop.get(s, 0) + p
    brands = [(a, b) for a in _BRAND_A for b in _BRAND_B]
    rng.shuffle(brands)
    width = max(3, len(str(n - 1)))
    used: set[str] = set()
    upper = _ALNUM[10:36] + _ALNUM[:10]
    spare = (x + y + z for x in upper for y in upper for z in upper)  # 36^3 codes > MAX_CPOS
    plan = []
    for i in range(n):
        a, b = brands[i % len(brands)]
        brand = f"{a}{b}" + (f" {i // len(brands) + 1}" if i >= len(brands) else "")
        code = _code(a, b, used, spare)
        used.add(code)
        provider_id = f"cpo-{i:0{width}d}"
        sub = f"{provider_id}.bpp.ubc.example"
        seed_b64, pub = _keypair(seed, sub)
        bpp = BppSpec(sub, f"https://{sub}/beckn", _key_id(seed, sub), seed_b64, pub, provider_id,
                      f"{brand} {rng.choice(_LEGAL)}", code, allot[i], math.ceil(allot[i] / MAX_CATALOG_CONNECTORS))
        if i < max(3, n // 8):  # the big operators are national
            states, corridors, share = None, tuple(range(len(CORRIDORS))), 0.15
        else:  # the long tail is regional: 1-3 states, population-weighted
            pool = dict(state_pop)
            chosen = []
            for _ in range(rng.choice((1, 1, 2, 2, 3))):
                s = _wchoice(rng, pool)
                chosen.append(s)
                del pool[s]
            states = tuple(sorted(chosen))
            corridors = tuple(k for k in range(len(CORRIDORS))
                              if {c.state[j] for j in _corridor_ends(k)} & set(states))
            share = 0.10 if corridors else 0.0
        payments = tuple(m for m, p in PAYMENTS if rng.random() < p)
        plan.append(_Cpo(i, bpp, brand, states, corridors, share, rng.random() < 0.4, payments,
                         rng.uniform(0.9, 1.12), rng.uniform(0.3, 0.95)))
    bap_id = "loadtest.bap.ubc.example"
    bap = BapSpec(bap_id, f"https://{bap_id}/beckn", _key_id(seed, bap_id), *_keypair(seed, bap_id))
    return plan, bap


# ---------------------------------------------------------------- stations


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
            out.append(_ALNUM[r])
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


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _place(rng: random.Random, cpo: _Cpo) -> tuple[float, float, tuple[float, float], str, str, int | None, str]:
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
        near = _corridor_ends(k)[0 if t < 0.5 else 1]
        street = f"{CORRIDORS[k].road} km {round(t * length)}"
        return lon, lat, (lon, lat), c.name[near], c.state[near], k, street
    idx, cum = _city_pool(cpo.states)
    i = rng.choices(idx, cum_weights=cum)[0]
    sigma = 1.0 + 2.5 * math.sqrt(c.pop[i] / 1e6)  # km: ~10 km in Mumbai, ~1.3 km in a town of 15k
    dx = max(-2.5 * sigma, min(2.5 * sigma, rng.gauss(0, sigma)))
    dy = max(-2.5 * sigma, min(2.5 * sigma, rng.gauss(0, sigma)))
    lat = min(INDIA_BBOX[3], max(INDIA_BBOX[1], c.lat[i] + dy / KM_PER_DEG))
    lon = min(INDIA_BBOX[2], max(INDIA_BBOX[0], c.lon[i] + dx / (KM_PER_DEG * math.cos(math.radians(lat)))))
    return lon, lat, (c.lon[i], c.lat[i]), c.name[i], c.state[i], None, rng.choice(_STREETS)


def _windows(rng: random.Random, parking: str, now: datetime) -> list[tuple[str, str]]:
    kind = "daily" if parking == "Mall" else _wchoice(rng, WINDOW_KINDS)
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
        out.append((_iso(base + timedelta(hours=int(start[:2]))), _iso(base + timedelta(hours=int(end[:2])))))
    return out


def _stations(cpo: _Cpo, seed: int, now: datetime) -> list[Station]:
    rng = random.Random(f"ubc-loadtest:{seed}:stations:{cpo.index}")
    code, host = cpo.bpp.code, cpo.bpp.subscriber_id
    out: list[Station] = []
    # UBC connector id segments: station 10, charge point 10, connector 14 characters (QR standard §3).
    station_id, point_id, connector_id = _IdMaker(rng, 10), _IdMaker(rng, 10), _IdMaker(rng, 14)
    for size in _station_sizes(cpo.bpp.connectors, rng):
        lon, lat, anchor, city, state, corridor, street = _place(rng, cpo)
        on_road = corridor is not None
        arche = _wchoice(rng, CORRIDOR_ARCHETYPES if on_road else CITY_ARCHETYPES)
        parking = _wchoice(rng, CORRIDOR_PARKING if on_road else CITY_PARKING)
        amen = [a for a, p in zip(_AMENITIES, _AMENITY_P[on_road]) if rng.random() < p]
        where = f"{CORRIDORS[corridor].road} near {city}" if on_road else city
        sid = station_id()
        st = Station(sid, f"{cpo.brand} {_PARKING_SITE[parking]}, {where}", round(lon, 6), round(lat, 6),
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
                status = _wchoice(rng, STATUSES) if cpo.live_status else None
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


# ---------------------------------------------------------------- rendering


def _price_band(spec: ConnectorSpec) -> tuple[float, float]:
    """INR per kWh by power band (CEEW average ₹16/kWh; UBC examples ₹15-45)."""
    if spec.kw <= 3.3:
        return 9, 13
    if spec.power_type != "DC":
        return 12, 18
    if spec.kw <= 15:
        return 14, 17
    if spec.kw <= 60:
        return 17, 22
    return (20, 25) if spec.kw <= 150 else (23, 28)


def _period(start: datetime, end: datetime, times: tuple[str, str] | None = None) -> dict[str, str]:
    out = {"@type": "beckn:TimePeriod", "schema:startDate": _iso(start), "schema:endDate": _iso(end)}
    if times:
        out["schema:startTime"], out["schema:endTime"] = times
    return out


def _offer(cpo: _Cpo, oid: str, name: str, items: list[str], price: dict, validity: dict, attrs: dict) -> dict:
    return {"@context": CORE_CONTEXT, "@type": "beckn:Offer", "beckn:id": oid,
            "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": name}, "beckn:items": items,
            "beckn:price": price, "beckn:validity": validity, "beckn:acceptedPaymentMethod": list(cpo.payments),
            "beckn:offerAttributes": {"@context": OFFER_CONTEXT, "@type": "ChargingOffer", **attrs},
            "beckn:provider": cpo.bpp.provider_id}


def _station_offers(rng: random.Random, cpo: _Cpo, st: Station, now: datetime) -> list[dict]:
    groups: dict[str, list[str]] = {}
    for c in st.connectors:
        groups.setdefault(c.spec, []).append(c.item_id)
    promo = rng.random() < 0.15
    day = timedelta(days=1)
    out = []
    for key, items in groups.items():
        spec = CONNECTORS[key]
        tag = f"{st.id}-{key.replace('/', '-').replace('.', '_').lower()}"
        label = f"{spec.connector_type} {spec.kw:g}kW"
        lo, hi = _price_band(spec)
        kwh = round(rng.uniform(lo, hi) * cpo.price_factor * 2) / 2
        start, end = now - day * rng.randint(1, 180), now + day * rng.randint(60, 365)
        attrs: dict[str, Any] = {"tariffModel": "PER_KWH"}
        if rng.random() < (0.7 if spec.power_type == "DC" else 0.35):
            attrs["idleFeePolicy"] = {"currency": "INR", "value": rng.choice((1, 2, 3)), "applicableQuantity": {
                "unitCode": "MIN", "unitText": "minutes", "unitQuantity": rng.choice((1, 5, 10, 15))}}
        out.append(_offer(cpo, f"{tag}-kwh", f"Per-kWh Tariff - {label}", items,
                          {"currency": "INR", "value": kwh, "applicableQuantity": _KWH}, _period(start, end), attrs))
        if rng.random() < (0.05 if spec.power_type == "DC" else 0.12):
            per_min = round(spec.kw * kwh / 60 * 0.85, 2)
            out.append(_offer(cpo, f"{tag}-min", f"Per-Minute Tariff - {label}", items,
                              {"currency": "INR", "value": per_min, "applicableQuantity": _MIN},
                              _period(start, end), {"tariffModel": "PER_MINUTE"}))
        if promo:  # the UBC lunch-hour promo: 10 % off 12:00-14:00; a few expired or not yet started
            r = rng.random()
            p_start = now - day * 7 if r > 0.05 else now - day * 60
            p_end = now + day * rng.randint(14, 90) if r > 0.05 else now - day * rng.randint(1, 20)
            if 0.05 < r < 0.10:
                p_start, p_end = now + day * rng.randint(2, 10), now + day * rng.randint(30, 60)
            out.append(_offer(cpo, f"{tag}-lunch", f"Lunch-Hour Promo - 10% off {label} 12:00-14:00", items,
                              {"currency": "INR", "value": round(kwh * 0.9, 2), "applicableQuantity": _KWH},
                              _period(p_start, p_end, ("12:00:00", "14:00:00")), {"tariffModel": "TIME_OF_DAY"}))
    return out


def _items(cpo: _Cpo, st: Station, provider: dict) -> list[dict]:
    location = {"@type": "beckn:Location", "geo": {"type": "Point", "coordinates": [st.lon, st.lat]},
                "address": {"streetAddress": f"{_PARKING_SITE[st.parking]}, {st.street}",
                            "addressLocality": st.city, "addressRegion": STATES.get(st.state, st.state),
                            "addressCountry": "IN"}}
    station = {"id": st.id, "serviceLocation": location}
    windows = [{"@type": "beckn:TimePeriod", "schema:startTime": a, "schema:endTime": b} for a, b in st.windows]
    rating = {"@type": "beckn:Rating", "beckn:ratingValue": st.rating, "beckn:ratingCount": st.rating_count}
    out = []
    for con in st.connectors:
        spec = CONNECTORS[con.spec]
        attrs: dict[str, Any] = {
            "@context": SERVICE_CONTEXT, "@type": "ChargingService", "connectorType": spec.connector_type,
            "maxPowerKW": spec.kw, "minPowerKW": spec.min_kw, "reservationSupported": st.reservation,
            "chargingStation": station}
        if st.amenities:
            attrs["amenityFeature"] = st.amenities
        attrs.update({"evseId": con.evse_id, "qrIdentifier": con.qr, "parkingType": st.parking,
                      "powerType": spec.power_type, "connectorFormat": spec.connector_format,
                      "chargingSpeed": charging_speed(spec.kw),
                      "vehicleType": list(spec.vehicles) if len(spec.vehicles) > 1 else spec.vehicles[0]})
        if con.status:
            attrs["stationStatus"] = con.status  # legacy live-status field, still sent by some BPPs
        item = {"@context": CORE_CONTEXT, "@type": "beckn:Item", "beckn:id": con.item_id,
                "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": f"{spec.title} - {st.name}",
                                     "beckn:shortDesc": f"{spec.connector_type} {spec.kw:g} kW {spec.power_type} "
                                                        f"charging at {st.name}"},
                "beckn:category": _CATEGORY}
        if windows:
            item["beckn:availabilityWindow"] = windows
        item.update({"beckn:rateable": True, "beckn:rating": rating, "beckn:isActive": con.active,
                     "beckn:provider": provider, "beckn:itemAttributes": attrs})
        out.append(item)
    return out


def _render(cpo: _Cpo, stations: list[Station], seed: int, now: datetime) -> list[dict]:
    rng = random.Random(f"ubc-loadtest:{seed}:offers:{cpo.index}")
    bpp = cpo.bpp
    provider = {"beckn:id": bpp.provider_id, "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": bpp.name}}
    cats = []
    for k in range(bpp.catalogs):
        mine = [s for s in stations if s.catalog == k]
        items = [it for s in mine for it in _items(cpo, s, provider)]
        offers = [o for s in mine for o in _station_offers(rng, cpo, s, now)]
        regions = sorted({STATES.get(s.state, s.state) for s in mine})
        where = ", ".join(regions[:3]) + (f" +{len(regions) - 3} more" if len(regions) > 3 else "")
        cats.append({
            "@context": CORE_CONTEXT, "@type": "beckn:Catalog", "beckn:id": f"{bpp.provider_id}-catalog-{k:02d}",
            "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": f"{bpp.name} charging network",
                                 "beckn:shortDesc": f"{len(items)} connectors at {len(mine)} stations in {where}"},
            "beckn:providerId": bpp.provider_id, "beckn:bppId": bpp.subscriber_id, "beckn:bppUri": bpp.url,
            "beckn:validity": _period(now - timedelta(days=1), now + timedelta(days=180)),
            "beckn:isActive": True, "beckn:items": items, "beckn:offers": offers})
    return cats


# ---------------------------------------------------------------- the network


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Generation builds millions of acyclic dicts; the cyclic GC would rescan them all for nothing
    (≈30 % of the CPU time at 1M connectors). Paused only inside one CPO's generation, never across a yield."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _jsonpath(conds: list[str]) -> dict[str, str]:
    return {"type": "jsonpath", "expression": "$[?(" + " && ".join(conds) + ")]"}


def _circle(target: str, lon: float, lat: float, meters: int) -> dict:
    return {"op": "s_dwithin", "targets": target, "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "distanceMeters": meters}


class Network:
    """A planned network; catalogs are generated on demand, one CPO at a time."""

    def __init__(self, connectors: int, seed: int, now: datetime, plan: list[_Cpo], bap: BapSpec):
        self.connectors, self.seed, self.now = connectors, seed, now
        self._cpos = plan
        self.bpps: list[BppSpec] = [c.bpp for c in plan]
        self.bap = bap
        self._stats: dict[str, int] | None = None

    # -- catalogs

    def iter_stations(self) -> Iterator[tuple[BppSpec, list[Station]]]:
        """The station model behind the catalogs (no JSON rendering), CPO by CPO."""
        for cpo in self._cpos:
            with _gc_paused():
                stations = _stations(cpo, self.seed, self.now)
            yield cpo.bpp, stations

    def _iter_cpo_catalogs(self) -> Iterator[tuple[BppSpec, list[dict]]]:
        if "catalogs" in self.__dict__:
            for bpp in self.bpps:
                yield bpp, self.catalogs[bpp.subscriber_id]
            return
        stats = dict.fromkeys(("stations", "corridor_stations", "items", "active_items", "offers"), 0)
        for cpo in self._cpos:
            with _gc_paused():
                stations = _stations(cpo, self.seed, self.now)
                cats = _render(cpo, stations, self.seed, self.now)
            stats["stations"] += len(stations)
            stats["corridor_stations"] += sum(s.corridor is not None for s in stations)
            stats["items"] += sum(len(s.connectors) for s in stations)
            stats["active_items"] += sum(c.active for s in stations for c in s.connectors)
            stats["offers"] += sum(len(c["beckn:offers"]) for c in cats)
            yield cpo.bpp, cats
        self._stats = stats

    def iter_catalogs(self) -> Iterator[tuple[BppSpec, dict]]:
        """(bpp, catalog) pairs, streamed: at most one CPO's catalogs are alive at a time."""
        for bpp, cats in self._iter_cpo_catalogs():
            for cat in cats:
                yield bpp, cat

    @cached_property
    def catalogs(self) -> dict[str, list[dict]]:
        """All catalogs by BPP subscriber id (materialises the whole network; prefer iter_catalogs at 1M)."""
        out: dict[str, list[dict]] = {}
        for bpp, cats in self._iter_cpo_catalogs():
            out[bpp.subscriber_id] = cats
        return out

    def counts(self) -> dict[str, int]:
        """Planned counts plus station/item/offer totals (these need one generation pass, then cached)."""
        if self._stats is None:
            for _ in self._iter_cpo_catalogs():
                pass
        assert self._stats is not None
        return {"connectors": self.connectors, "bpps": len(self.bpps),
                "catalogs": sum(b.catalogs for b in self.bpps), **self._stats}

    # -- publish requests and registry

    def _publish_batches(self, max_bytes: int) -> Iterator[tuple[BppSpec, list[dict], list[bytes]]]:
        budget = max_bytes - 2048  # room for the envelope
        for bpp, cats in self._iter_cpo_catalogs():
            batch: list[dict] = []
            parts: list[bytes] = []
            size = 0
            for cat in cats:
                raw = orjson.dumps(cat)
                if batch and size + len(raw) + 1 > budget:
                    yield bpp, batch, parts
                    batch, parts, size = [], [], 0
                batch.append(cat)
                parts.append(raw)
                size += len(raw) + 1
            if batch:
                yield bpp, batch, parts

    def _publish_context(self, bpp: BppSpec, rng: random.Random | None, timestamp: datetime | None) -> dict:
        ts = (timestamp or datetime.now(timezone.utc)).astimezone(timezone.utc)
        tid = _uuid(rng) if rng else str(uuid.uuid4())
        return {"version": "2.0.0", "action": "catalog_publish", "domain": DOMAIN,
                "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "message_id": _uuid(rng) if rng else str(uuid.uuid4()), "transaction_id": tid,
                "bpp_id": bpp.subscriber_id, "bpp_uri": bpp.url, "ttl": "PT30S"}

    def publish_payloads(self, max_bytes: int = MAX_PUBLISH_BYTES, *, timestamp: datetime | None = None,
                         id_seed: int | None = None) -> Iterator[tuple[BppSpec, dict]]:
        """catalog_publish bodies (dialect A), one BPP each, each under `max_bytes` when serialised (a single
        catalog is never split: a publish replaces whole catalogs). Fresh uuid4 ids unless `id_seed` is given
        (then reproducible); timestamp defaults to the current time."""
        rng = random.Random(f"ubc-loadtest:{self.seed}:publish:{id_seed}") if id_seed is not None else None
        for bpp, batch, _ in self._publish_batches(max_bytes):
            yield bpp, {"context": self._publish_context(bpp, rng, timestamp), "message": {"catalogs": batch}}

    def publish_payload_bytes(self, max_bytes: int = MAX_PUBLISH_BYTES, *, timestamp: datetime | None = None,
                              id_seed: int | None = None) -> Iterator[tuple[BppSpec, bytes]]:
        """The same requests as `publish_payloads`, already serialised (what gets signed and sent)."""
        rng = random.Random(f"ubc-loadtest:{self.seed}:publish:{id_seed}") if id_seed is not None else None
        for bpp, _, parts in self._publish_batches(max_bytes):
            ctx = orjson.dumps(self._publish_context(bpp, rng, timestamp))
            yield bpp, b'{"context":' + ctx + b',"message":{"catalogs":[' + b",".join(parts) + b"]}}"

    def registry_records(self, *, include_bap: bool = True) -> list[dict]:
        """Static registry file records (docs/decisions.md §R) for every BPP, plus the load-test BAP."""
        valid = {"status": "SUBSCRIBED", "valid_from": _iso(self.now - timedelta(days=1)),
                 "valid_until": _iso(self.now + timedelta(days=365))}
        out = [{"subscriber_id": b.subscriber_id, "key_id": b.key_id, "type": "BPP", "domain": DOMAIN, "url": b.url,
                "signing_public_key": b.public_key_b64, **valid} for b in self.bpps]
        if include_bap:
            b = self.bap
            out.append({"subscriber_id": b.subscriber_id, "key_id": b.key_id, "type": "BAP", "domain": DOMAIN,
                        "url": b.url, "signing_public_key": b.public_key_b64, **valid})
        return out

    # -- discover query mix (docs/decisions.md §G)

    def query_mix(self, n: int, seed: int = 0, *, weights: dict[str, float] | None = None) -> list[dict]:
        """`n` discover request bodies (dialect A), deterministic for (network, seed)."""
        return [body for _, body in self.labeled_query_mix(n, seed, weights=weights)]

    def labeled_query_mix(self, n: int, seed: int = 0, *,
                          weights: dict[str, float] | None = None) -> list[tuple[str, dict]]:
        """(kind, body) pairs; kinds: `radius`, `qr`, `time_window`, `route` (mix `QUERY_KINDS`)."""
        if not 0 <= n <= MAX_QUERIES:
            raise ValueError(f"n must be within 0..{MAX_QUERIES}")
        weights = weights or QUERY_KINDS
        if set(weights) - set(QUERY_KINDS):
            raise ValueError(f"unknown query kinds {sorted(set(weights) - set(QUERY_KINDS))}")
        rng = random.Random(f"ubc-loadtest:{self.seed}:queries:{seed}")
        kinds = rng.choices(list(weights), weights=list(weights.values()), k=n)
        cum, total = [], 0
        for c in self._cpos:
            total += c.bpp.connectors
            cum.append(total)
        out: list[tuple[str, dict] | None] = [None] * n
        by_cpo: dict[int, list[int]] = {}
        for q, kind in enumerate(kinds):
            if kind == "route":
                out[q] = (kind, self._route_query(random.Random(f"ubc-loadtest:{self.seed}:q:{seed}:{q}")))
            else:  # sample a station: CPO by size, then uniformly among its stations
                by_cpo.setdefault(rng.choices(range(len(self._cpos)), cum_weights=cum)[0], []).append(q)
        build = {"radius": self._radius_query, "qr": self._qr_query, "time_window": self._window_query}
        for ci in sorted(by_cpo):  # one CPO's stations at a time, so memory stays bounded at 1M
            with _gc_paused():
                stations = _stations(self._cpos[ci], self.seed, self.now)
            for q in by_cpo[ci]:
                qrng = random.Random(f"ubc-loadtest:{self.seed}:q:{seed}:{q}")
                out[q] = (kinds[q], build[kinds[q]](qrng, qrng.choice(stations), stations))
        return [x for x in out if x is not None]

    def _discover(self, rng: random.Random, message: dict) -> dict:
        b = self.bap
        return {"context": {"version": "2.0.0", "action": "discover", "domain": DOMAIN, "bap_id": b.subscriber_id,
                            "bap_uri": b.url, "transaction_id": _uuid(rng), "message_id": _uuid(rng),
                            "timestamp": _iso(self.now), "ttl": "PT30S", "schema_context": [SERVICE_CONTEXT]},
                "message": message}

    @staticmethod
    def _target(rng: random.Random) -> str:
        # Both target spellings in circulation must resolve to the station location (docs/decisions.md §S).
        return UBC_GEO_TARGET if rng.random() < 0.8 else AVAILABLE_AT_TARGET

    def _radius_query(self, rng: random.Random, st: Station, _: list[Station]) -> dict:
        spec = CONNECTORS[rng.choice(st.connectors).spec]
        conds = [f"@.beckn:itemAttributes.connectorType == '{spec.connector_type}'"]
        if rng.random() < 0.8:
            conds.append(f"@.beckn:itemAttributes.maxPowerKW >= {max(s for s in POWER_STEPS if s <= spec.kw)}")
        if spec.vehicles == LEV and rng.random() < 0.3:
            conds.append("@.beckn:itemAttributes.vehicleType == '2-WHEELER'")
        circle = _circle(self._target(rng), *st.anchor, rng.randrange(5000, 15001, 500))
        return self._discover(rng, {"filters": _jsonpath(conds), "spatial": [circle]})

    def _qr_query(self, rng: random.Random, st: Station, stations: list[Station]) -> dict:
        # An inactive connector is hidden, and a QR scan should find something.
        live = ([c for c in st.connectors if c.active] or [c for s in stations for c in s.connectors if c.active]
                or st.connectors)
        con = rng.choice(live)
        r = rng.random()
        cond = (f"@.beckn:id == '{con.item_id}'" if r < 0.5 else
                f"@.beckn:itemAttributes.qrIdentifier == '{con.qr}'" if r < 0.85 else
                f"@.beckn:itemAttributes.evseId == '{con.evse_id}'")
        return self._discover(rng, {"filters": _jsonpath([cond])})

    def _window_query(self, rng: random.Random, st: Station, stations: list[Station]) -> dict:
        if not st.windows:  # prefer a station that publishes windows, so the slot exists somewhere
            st = next((s for s in rng.sample(stations, min(len(stations), 20)) if s.windows), st)
        spec = CONNECTORS[rng.choice(st.connectors).spec]
        if st.windows:  # a 1-2 h slot inside one of the station's windows, in the next two local days
            a, b = rng.choice(st.windows)
            if "T" in a:
                open_, close = (datetime.fromisoformat(x.replace("Z", "+00:00")) for x in (a, b))
            else:
                day = datetime.combine(self.now.astimezone(IST).date(), datetime.min.time(), IST)
                day += timedelta(days=rng.randint(0, 1))
                open_, close = day + timedelta(hours=int(a[:2])), day + timedelta(hours=int(b[:2]))
            start = open_ + timedelta(hours=rng.randint(0, max(0, int((close - open_).total_seconds()) // 3600 - 2)))
            end = min(close, start + timedelta(hours=rng.randint(1, 2)))
        else:
            start = self.now + timedelta(hours=rng.randint(1, 47))
            end = start + timedelta(hours=rng.randint(1, 4))
        conds = [f"@.beckn:itemAttributes.vehicleType == '{spec.vehicles[0]}'",
                 f"@.beckn:itemAttributes.connectorType == '{spec.connector_type}'",
                 f"@.beckn:availabilityWindow[?(@.schema:startTime <= '{_iso(end)}' && "
                 f"@.schema:endTime >= '{_iso(start)}')]"]
        return self._discover(rng, {"filters": _jsonpath(conds),
                                    "spatial": [_circle(self._target(rng), *st.anchor, 10000)]})

    def _route_query(self, rng: random.Random) -> dict:
        (lon_a, lat_a), (lon_b, lat_b) = corridor_line(rng.randrange(len(CORRIDORS)))
        t0 = rng.uniform(0.0, 0.5)
        t1 = rng.uniform(t0 + 0.4, 1.0)
        if rng.random() < 0.5:
            t0, t1 = t1, t0
        m = rng.randint(6, 12)
        line = [[round(lon_a + t * (lon_b - lon_a), 6), round(lat_a + t * (lat_b - lat_a), 6)]
                for t in (t0 + (t1 - t0) * j / (m - 1) for j in range(m))]
        spatial = [{"op": "s_dwithin", "targets": UBC_GEO_TARGET,
                    "geometry": {"type": "LineString", "coordinates": line},
                    "distanceMeters": rng.randrange(2000, 5001, 500)}]
        message: dict[str, Any] = {"spatial": spatial}
        if rng.random() < 0.5:
            message = {"filters": _jsonpath(["@.beckn:itemAttributes.connectorType == 'CCS2'",
                                             "@.beckn:itemAttributes.maxPowerKW >= 50"]), "spatial": spatial}
        return self._discover(rng, message)


def generate_network(connectors: int, *, seed: int = 42, cpos: int | None = None,
                     now: datetime | None = None) -> Network:
    """Plan a deterministic network of exactly `connectors` connectors (items).

    `cpos` defaults to ~connectors/400, within 5..600 (never more than connectors/2). `now` (default: today
    00:00 UTC) anchors validity ranges and dated availability windows; a naive `now` is taken as UTC.
    """
    if not isinstance(connectors, int) or not 1 <= connectors <= MAX_CONNECTORS:
        raise ValueError(f"connectors must be an integer within 1..{MAX_CONNECTORS}")
    if cpos is not None and not 1 <= cpos <= MAX_CPOS:
        raise ValueError(f"cpos must be within 1..{MAX_CPOS}")
    if now is None:
        now = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    plan, bap = _plan(connectors, seed, cpos)
    return Network(connectors, seed, now.astimezone(timezone.utc), plan, bap)


# ---------------------------------------------------------------- CLI


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cds.demo.generator",
                                description="Generate a deterministic India-wide UBC charging network.")
    p.add_argument("--connectors", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--cpos", type=int, default=None, help="number of CPOs/BPPs (default ~connectors/400, 5..600)")
    p.add_argument("--queries", type=int, default=10_000, help="discover bodies written to queries.jsonl")
    p.add_argument("--now", default=None, help="ISO date-time validity is built around (default today 00:00Z)")
    p.add_argument("--max-bytes", type=int, default=MAX_PUBLISH_BYTES, help="publish request size limit")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if not 1 <= a.connectors <= MAX_CONNECTORS:
        p.error(f"--connectors must be within 1..{MAX_CONNECTORS}")
    if not 0 <= a.queries <= MAX_QUERIES:
        p.error(f"--queries must be within 0..{MAX_QUERIES}")
    if a.cpos is not None and not 1 <= a.cpos <= MAX_CPOS:
        p.error(f"--cpos must be within 1..{MAX_CPOS}")
    try:
        now = datetime.fromisoformat(a.now.replace("Z", "+00:00")) if a.now else None
    except ValueError:
        p.error("--now must be an ISO date-time")
    t0 = time.perf_counter()
    net = generate_network(a.connectors, seed=a.seed, cpos=a.cpos, now=now)
    out: Path = a.out
    opt = orjson.OPT_INDENT_2
    _write(out / "registry.json", orjson.dumps(net.registry_records(), option=opt))
    _write(out / "participants.json", orjson.dumps(
        {"bap": net.bap, "bpps": net.bpps}, default=msgspec.to_builtins, option=opt))
    files = 0
    biggest = 0
    # Reproducible files: ids from the seed, timestamp = `now`; a sender re-stamps both before signing.
    for i, (bpp, body) in enumerate(net.publish_payload_bytes(a.max_bytes, timestamp=net.now, id_seed=a.seed)):
        _write(out / "publish" / f"{i:05d}-{bpp.provider_id}.json", body)
        files += 1
        biggest = max(biggest, len(body))
    t_publish = time.perf_counter() - t0
    t1 = time.perf_counter()
    lines = [orjson.dumps({"kind": k, "body": b}) for k, b in net.labeled_query_mix(a.queries, seed=a.seed)]
    _write(out / "queries.jsonl", b"\n".join(lines) + (b"\n" if lines else b""))
    t_queries = time.perf_counter() - t1
    counts = {**net.counts(), "publish_requests": files, "largest_request_bytes": biggest, "queries": a.queries}
    manifest = {"seed": a.seed, "now": _iso(net.now), "counts": counts,
                "seconds": {"catalogs_and_publish_files": round(t_publish, 2), "queries": round(t_queries, 2)}}
    _write(out / "manifest.json", orjson.dumps(manifest, option=opt))
    sys.stdout.write(orjson.dumps(manifest, option=opt).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
