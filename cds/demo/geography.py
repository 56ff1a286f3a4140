"""Where the demo network's stations are (docs/decisions.md §G): the GeoNames Indian cities shipped in `cities/`
(population-weighted pools, by state), the highway corridors between them, and India's bounding box.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources
from typing import NamedTuple


INDIA_BBOX = (68.0, 6.5, 97.5, 37.5)  # lon_min, lat_min, lon_max, lat_max


KM_PER_DEG = 111.32


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
def city_pool(states: tuple[str, ...] | None) -> tuple[list[int], list[float]]:
    """City indices of the given states (None = all) with cumulative population weights."""
    c = cities()
    idx = [i for i in range(len(c.name)) if states is None or c.state[i] in states]
    cum, total = [], 0.0
    for i in idx:
        total += c.pop[i]
        cum.append(total)
    return idx, cum


@cache
def corridor_ends(k: int) -> tuple[int, int]:
    c = cities()
    return c.name.index(CORRIDORS[k].a), c.name.index(CORRIDORS[k].b)


def corridor_line(k: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """The corridor's straight line as ((lon, lat), (lon, lat))."""
    c, (a, b) = cities(), corridor_ends(k)
    return (c.lon[a], c.lat[a]), (c.lon[b], c.lat[b])
