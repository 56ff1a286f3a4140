"""The demo network behind `cds serve --demo`: keys, a static registry file and seeded catalogs
under CDS_DATA_DIR/demo, so that a newcomer's first discover returns real results.

Everything is generated once and reused; nothing here runs unless --demo is given.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import secrets
import time
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from cds.keys import generate_keypair, load_private_key, public_key_b64

if TYPE_CHECKING:
    from cds.config import Settings
    from indexer.storage import Storage

log = logging.getLogger("cds.demo.seed")

CDS_ID = "cds.demo.ubc.local"
BAP_ID = "demo-bap.ubc.local"
UBC_BPP_ID = "example-bpp.com"          # the publisher of the UBC example catalog
DEMO_CONNECTORS = 2000
DEMO_SEED = 7


def demo_dir(data_dir: str | None = None) -> Path:
    return Path(data_dir or os.environ.get("CDS_DATA_DIR") or "./data") / "demo"


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record(sub_id: str, key_id: str, type_: str, url: str, pub: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {"subscriber_id": sub_id, "key_id": key_id, "type": type_, "domain": "beckn.one:deg:ev-charging",
            "url": url, "signing_public_key": pub, "status": "SUBSCRIBED",
            "valid_from": _iso(now - timedelta(days=1)), "valid_until": _iso(now + timedelta(days=3650))}


def ensure_demo(data_dir: str | None = None, *, cds_url: str = "http://127.0.0.1:8080/beckn") -> dict[str, Any]:
    """Create (once) the demo keys and registry file; returns the keys document."""
    d = demo_dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    keys_file = d / "keys.json"
    if keys_file.exists():
        keys = orjson.loads(keys_file.read_bytes())
    else:
        keys = {}
        for name, sub_id in (("cds", CDS_ID), ("bap", BAP_ID), ("ubc_bpp", UBC_BPP_ID)):
            seed, pub = generate_keypair()
            keys[name] = {"subscriber_id": sub_id, "key_id": f"{name}-demo-key", "private_key": seed, "public_key": pub}
        tmp = keys_file.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(keys, option=orjson.OPT_INDENT_2))
        os.chmod(tmp, 0o600)
        tmp.replace(keys_file)
    records = [
        _record(CDS_ID, keys["cds"]["key_id"], "CDS", cds_url, keys["cds"]["public_key"]),
        # The demo BAP is `cds request`: it listens for callbacks on a temporary local port.
        _record(BAP_ID, keys["bap"]["key_id"], "BAP", "http://127.0.0.1/bap", keys["bap"]["public_key"]),
        _record(UBC_BPP_ID, keys["ubc_bpp"]["key_id"], "BPP", "http://127.0.0.1/bpp", keys["ubc_bpp"]["public_key"]),
    ]
    records += _network().registry_records()
    tmp = d / "registry.json.tmp"
    tmp.write_bytes(orjson.dumps(records, option=orjson.OPT_INDENT_2))
    tmp.replace(d / "registry.json")
    return keys


@functools.lru_cache(maxsize=1)
def _network():
    """Generated once per process: both the registry file and the seeding need it."""
    from cds.demo.generator import generate_network

    return generate_network(DEMO_CONNECTORS, seed=DEMO_SEED)


def demo_overrides(*, host: str, port: int) -> dict[str, Any]:
    """Settings for `cds serve --demo`; explicit CDS_* variables still win."""
    cds_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/beckn"
    keys = ensure_demo(cds_url=cds_url)
    # Loopback only, never the other private ranges (docs/decisions.md §29): the demo's apps and BPPs run here.
    o: dict[str, Any] = {}
    env = os.environ
    if not env.get("CDS_ALLOW_LOOPBACK_CALLBACKS"):
        o["allow_loopback_callbacks"] = True
    if not env.get("CDS_REGISTRY_FILE") and not env.get("CDS_REGISTRY_URL"):
        o["registry_file"] = str(demo_dir() / "registry.json")
    if not env.get("CDS_SIGNING_PRIVATE_KEY"):
        o.update(signing_private_key=keys["cds"]["private_key"], subscriber_id=CDS_ID, key_id=keys["cds"]["key_id"])
    if not env.get("CDS_SUBSCRIBER_URL"):
        o["subscriber_url"] = cds_url
    if not env.get("CDS_CONSOLE_TOKEN"):
        o["console_token"] = secrets.token_urlsafe(24)    # a new one per start; `cds serve` prints it
    return o


def _ubc_catalog_now(now: datetime) -> dict[str, Any]:
    """The UBC example catalog with its dates moved around today (its offers ended in 2026-04)."""
    body = orjson.loads(resources.files("cds.demo.data").joinpath("ubc_example_publish.json").read_bytes())
    cat = copy.deepcopy(body["message"]["catalogs"][0])
    day = now.strftime("%Y-%m-%d")
    for item in cat.get("beckn:items", []):
        for w in item.get("beckn:availabilityWindow", []):
            for k in ("schema:startTime", "schema:endTime"):
                if isinstance(w.get(k), str) and "T" in w[k]:
                    w[k] = day + w[k][w[k].index("T"):]
    for offer in cat.get("beckn:offers", []):
        v = offer.get("beckn:validity")
        if isinstance(v, dict):
            v["schema:startDate"] = _iso(now - timedelta(days=30))
            v["schema:endDate"] = _iso(now + timedelta(days=180))
    return cat


def demo_catalogs(now: datetime) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(publisher id, publisher URI, catalog) of everything the demo indexes: the UBC example, then the network."""
    out: list[tuple[str, str | None, dict[str, Any]]] = [(UBC_BPP_ID, "http://127.0.0.1/bpp", _ubc_catalog_now(now))]
    net = _network()
    for bpp in net.bpps:
        out += [(bpp.subscriber_id, bpp.url, cat) for cat in net.catalogs[bpp.subscriber_id]]
    return out


async def seed(storage: "Storage", settings: "Settings") -> None:
    """Index the demo catalogs directly (no callbacks: the demo BPPs have no servers)."""
    from cds.core.normalize import normalize_catalog

    batches = demo_catalogs(datetime.now(timezone.utc))
    t0 = time.perf_counter()
    n = {"catalogs_indexed": 0, "items_indexed": 0, "catalogs_reused": 0, "items_reused": 0}
    for publisher, uri, cat in batches:
        cid = cat.get("beckn:id")
        existing = await storage.get_catalog(publisher, cid)
        if existing is not None and (existing.expires_at or float("inf")) > time.time() + 86400:
            n["catalogs_reused"] += 1              # a restart: the persisted index still has it
            n["items_reused"] += existing.item_count
            continue
        record, _warnings = normalize_catalog(cat, publisher_id=publisher, publisher_uri=uri, dialect="A",
                                              settings=settings, now=time.time())
        await storage.replace_catalog(record)
        n["catalogs_indexed"] += 1
        n["items_indexed"] += len(record.items)
    from cds import gcpolicy
    gcpolicy.settle()
    indexed = f"indexed {n['catalogs_indexed']} catalogs ({n['items_indexed']} items)"
    reused = f"reused {n['catalogs_reused']} catalogs ({n['items_reused']} items) already in the index"
    msg = ", ".join(part for part, count in ((indexed, n["catalogs_indexed"]), (reused, n["catalogs_reused"])) if count)
    log.info(f"demo network: {msg}", extra={"fields": {**n, "seconds": round(time.perf_counter() - t0, 2)}})


def demo_key(role: str, data_dir: str | None = None) -> tuple[str, str, Any]:
    """(subscriber_id, key_id, SigningKey) of a demo participant ("bap" or "ubc_bpp")."""
    keys_file = demo_dir(data_dir) / "keys.json"
    if not keys_file.exists():
        raise FileNotFoundError(f"{keys_file} not found: start `cds serve --demo` once, or pass --key with "
                                "--subscriber-id and --key-id")
    k = orjson.loads(keys_file.read_bytes())[role]
    key = load_private_key(k["private_key"])
    assert public_key_b64(key) == k["public_key"]
    return k["subscriber_id"], k["key_id"], key
