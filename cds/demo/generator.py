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

The parts: `market` (what the network is made of), `geography` (cities, corridors), `participants` (BPPs, the
BAP, test keys), `planning` (CPOs and their catalogs), `stations` (one CPO's stations), `catalogs` (rendering);
this module holds the `Network` (catalogs on demand, publish payloads, registry records, the discover query mix)
and the CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import msgspec
import orjson

from cds.demo.catalogs import render_catalogs
from cds.demo.geography import CORRIDORS, corridor_line
from cds.demo.market import (
    AVAILABLE_AT_TARGET, CONNECTORS, DOMAIN, IST, LEV, MAX_CONNECTORS, MAX_CPOS, MAX_PUBLISH_BYTES, MAX_QUERIES,
    POWER_STEPS, QUERY_KINDS, SERVICE_CONTEXT, UBC_GEO_TARGET,
)
from cds.demo.participants import BapSpec, BppSpec
from cds.demo.planning import Cpo, plan_network
from cds.demo.stations import Station, cpo_stations, iso_time


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

    def __init__(self, connectors: int, seed: int, now: datetime, plan: list[Cpo], bap: BapSpec):
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
                stations = cpo_stations(cpo, self.seed, self.now)
            yield cpo.bpp, stations

    def _iter_cpo_catalogs(self) -> Iterator[tuple[BppSpec, list[dict]]]:
        if "catalogs" in self.__dict__:
            for bpp in self.bpps:
                yield bpp, self.catalogs[bpp.subscriber_id]
            return
        stats = dict.fromkeys(("stations", "corridor_stations", "items", "active_items", "offers"), 0)
        for cpo in self._cpos:
            with _gc_paused():
                stations = cpo_stations(cpo, self.seed, self.now)
                cats = render_catalogs(cpo, stations, self.seed, self.now)
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
        valid = {"status": "SUBSCRIBED", "valid_from": iso_time(self.now - timedelta(days=1)),
                 "valid_until": iso_time(self.now + timedelta(days=365))}
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
                stations = cpo_stations(self._cpos[ci], self.seed, self.now)
            for q in by_cpo[ci]:
                qrng = random.Random(f"ubc-loadtest:{self.seed}:q:{seed}:{q}")
                out[q] = (kinds[q], build[kinds[q]](qrng, qrng.choice(stations), stations))
        return [x for x in out if x is not None]

    def _discover(self, rng: random.Random, message: dict) -> dict:
        b = self.bap
        return {"context": {"version": "2.0.0", "action": "discover", "domain": DOMAIN, "bap_id": b.subscriber_id,
                            "bap_uri": b.url, "transaction_id": _uuid(rng), "message_id": _uuid(rng),
                            "timestamp": iso_time(self.now), "ttl": "PT30S", "schema_context": [SERVICE_CONTEXT]},
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
                 f"@.beckn:availabilityWindow[?(@.schema:startTime <= '{iso_time(end)}' && "
                 f"@.schema:endTime >= '{iso_time(start)}')]"]
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
    plan, bap = plan_network(connectors, seed, cpos)
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
    manifest = {"seed": a.seed, "now": iso_time(net.now), "counts": counts,
                "seconds": {"catalogs_and_publish_files": round(t_publish, 2), "queries": round(t_queries, 2)}}
    _write(out / "manifest.json", orjson.dumps(manifest, option=opt))
    sys.stdout.write(orjson.dumps(manifest, option=opt).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
