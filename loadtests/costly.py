"""Costly discover ingredients shared by the cost benchmark (`loadtests.cost_cases`) and the bounded-cost tests:
geometries that are expensive to repair or test, the spatial message around them, and a signed discover body
(docs/decisions.md §24)."""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from typing import Any

import aiohttp
import orjson

from cds.core.timeutil import rfc3339
from cds.trust.signing import sign_request

TARGET = "$['beckn:itemAttributes.chargingStation.serviceLocation.geo']"


def _polygon(pts: list[list[float]]) -> dict:
    return {"type": "Polygon", "coordinates": [pts + [pts[0]]]}


def _round(v: float, ndigits: int | None) -> float:
    return v if ndigits is None else round(v, ndigits)


def star(n: int, cx: float = 77.5, cy: float = 12.9, r: float = 0.5) -> dict:
    """A self-intersecting star polygon {n / (n//2)}: its edges cross about n²/4 times."""
    k = n // 2
    return _polygon([[cx + r * math.cos(2 * math.pi * (i * k % n) / n), cy + r * math.sin(2 * math.pi * (i * k % n) / n)]
                     for i in range(n)])


def random_polygon(n: int, seed: int = 1, ndigits: int | None = 6) -> dict:
    rnd = random.Random(seed)
    return _polygon([[_round(77.5 + rnd.uniform(-0.5, 0.5), ndigits), _round(12.9 + rnd.uniform(-0.5, 0.5), ndigits)]
                     for _ in range(n)])


def circle(n: int, cx: float = 77.5, cy: float = 12.9, r: float = 0.5, ndigits: int | None = 6) -> dict:
    return _polygon([[_round(cx + r * math.cos(2 * math.pi * i / n), ndigits),
                      _round(cy + r * math.sin(2 * math.pi * i / n), ndigits)] for i in range(n)])


def route(n: int, seed: int = 0, start: tuple[float, float] | None = None, ndigits: int | None = 2) -> dict:
    """A random walk north-east; rounded to 2 digits, 8 routes of 9,000 points fit in under 1 MiB."""
    rnd = random.Random(seed)
    x, y = start if start is not None else (72.0 + seed, 9.0)
    pts = []
    for _ in range(n):
        x += rnd.uniform(-0.001, 0.003)
        y += rnd.uniform(-0.001, 0.003)
        pts.append([_round(x, ndigits), _round(y, ndigits)])
    return {"type": "LineString", "coordinates": pts}


def zigzag(n: int, seed: int) -> dict:
    """A route jumping across India: every segment is long, so its corridor is costly."""
    rnd = random.Random(seed)
    return {"type": "LineString", "coordinates": [[round(rnd.uniform(68, 97), 3), round(rnd.uniform(8, 35), 3)]
                                                  for _ in range(n)]}


def spatial_message(*geometries: dict, op: str = "s_intersects", d: float | None = None) -> dict:
    return {"spatial": [{"op": op, "targets": TARGET, "geometry": g, **({"distanceMeters": d} if d is not None else {})}
                        for g in geometries]}


def signed_discover(key: tuple[str, str, Any], message: dict) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a discover signed by `key` = (subscriber id, key id, SigningKey)."""
    sub, key_id, sk = key
    doc = {"context": {"version": "2.0.0", "action": "discover", "domain": "beckn.one:deg:ev-charging",
                       "bap_id": sub, "bap_uri": "http://127.0.0.1:9/bap", "transaction_id": str(uuid.uuid4()),
                       "message_id": str(uuid.uuid4()), "timestamp": rfc3339(), "ttl": "PT30S"},
           "message": message}
    raw = orjson.dumps(doc)
    return raw, {"Content-Type": "application/json",
                 "Authorization": sign_request(raw, subscriber_id=sub, key_id=key_id, key=sk)}


async def poll_health(session: aiohttp.ClientSession, base: str, stop: asyncio.Event, delays: list[float], *,
                      require_ok: bool = False) -> None:
    """Time `/health/live` every 10 ms until `stop`: the loop's availability while a costly request runs."""
    while not stop.is_set():
        t0 = time.perf_counter()
        async with session.get(f"{base}/health/live") as r:
            await r.read()
            if require_ok:
                assert r.status == 200
        delays.append(time.perf_counter() - t0)
        await asyncio.sleep(0.01)
