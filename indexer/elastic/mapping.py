"""Index layout, document bodies and index bootstrap/migration for the Elasticsearch backend.

Two indices, each behind an alias that points at a versioned index (`{prefix}-items-v1`, ...):

- items: one doc per (catalog generation, item). Filterable fields are derived from `ItemDoc`;
  the whole ItemDoc (raw JSON included) is kept as one msgpack blob `d` (binary: stored, never
  indexed), which is all the hot path fetches and all a migration needs to rebuild a doc.
- catalogs: one `meta` doc per catalog generation (`m:{cg}`, immutable) and one `generations`
  doc listing the current `cg` of every visible catalog. That list is the single source of
  truth for visibility: queries filter items with a terms *lookup* on it (see store.py).

Only core-server features are used (no painless, reindex, ingest or x-pack spatial), so the
same code runs on Elastic's integ-test distribution and on a full cluster.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from typing import Any

import msgspec
import orjson
from elasticsearch import AsyncElasticsearch, NotFoundError

from cds.core.documents import CatalogMeta, ItemDoc, upgrade_terms
from cds.core.rawjson import pack, unpack

MAPPING_VERSION = 2             # 2: analysed text terms (docs/decisions.md §25) replace substring words
GENERATIONS_ID = "generations"
DAY = 86400

_KW = {"type": "keyword"}
_DBL = {"type": "double"}
_BOOL = {"type": "boolean"}
_DAILY = {"type": "integer_range"}

# ItemDoc attributes indexed as keywords (also the terms pushdowns translate.py can use).
KEYWORD_FIELDS = (
    "bpp_id", "catalog_id", "item_id", "provider_id", "provider_name", "connector_type", "power_type",
    "charging_speed", "vehicle_types", "amenities", "parking_type", "station_id", "evse_id", "qr",
    "status", "pack",
)
NUMERIC_FIELDS = ("max_kw", "min_kw")
BOOL_FIELDS = ("reservation", "is_active")
OFFER_KEYWORD_FIELDS = ("id", "currency", "unit", "tariff_model", "payment_methods")
OFFER_NUMERIC_FIELDS = ("price", "valid_from", "valid_to")

ITEMS_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "_meta": {"version": MAPPING_VERSION, "kind": "cds-items"},
    "properties": {
        "cg": _KW, "ckey": _KW, "gen": _KW,
        "ts": _DBL,                                     # generation start (wall clock), for orphan sweeps
        **{f: _KW for f in KEYWORD_FIELDS},
        **{f: _DBL for f in NUMERIC_FIELDS},
        **{f: _BOOL for f in BOOL_FIELDS},
        "loc": {"type": "geo_point"},
        "windows": {"type": "date_range", "format": "epoch_millis"},
        "daily": _DAILY,
        "has_windows": _BOOL,
        # ItemDoc.terms: the analysed terms of the text fields, matched exactly (cds.core.text)
        "terms": _KW,
        # the catalog's fields, copied so expiry can be filtered without a join
        "exp": _DBL, "cat_from": _DBL, "cat_active": _BOOL, "live": _BOOL,
        # the earliest end of validity among the item's offers: the offer purge's only query on offers
        # (docs/decisions.md §P "Elasticsearch documents")
        "offers_end": _DBL,
        # written before offers_end: one nested Lucene document per offer; kept for the docs still holding it
        "offers": {
            "type": "nested",
            "properties": {
                **{f: _KW for f in OFFER_KEYWORD_FIELDS},
                **{f: _DBL for f in OFFER_NUMERIC_FIELDS},
                "is_active": _BOOL,
                "daily": _DAILY,
            },
        },
        "d": {"type": "binary"},                        # msgpack ItemDoc; not indexed
    },
}

CATALOGS_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "_meta": {"version": MAPPING_VERSION, "kind": "cds-catalogs"},
    "properties": {
        "kind": _KW,                                    # "meta" | "generations"
        "cg": _KW, "ckey": _KW, "gen": _KW, "bpp_id": _KW, "catalog_id": _KW,
        "published_at": _DBL, "expires_at": _DBL, "valid_from": _DBL, "ts": _DBL,
        "is_active": _BOOL, "live": _BOOL, "item_count": {"type": "integer"},
        "m": {"type": "binary"},                        # msgpack CatalogMeta without raw
        "raw": {"type": "binary"},                      # the whole catalog, for MERGE publishes (maybe packed)
        # generations doc: current cg of every visible catalog, read by terms lookups from _source
        "current": {"type": "keyword", "index": False, "doc_values": False},
    },
}


def index_settings(shards: int, replicas: str) -> dict[str, Any]:
    # auto_expand "0-1": green on one node, one replica as soon as a second node joins
    return {"number_of_shards": shards, "auto_expand_replicas": replicas, "refresh_interval": "1s"}


class IndexNames(msgspec.Struct, frozen=True):
    items: str
    catalogs: str

    def versioned(self, alias: str, version: int = MAPPING_VERSION) -> str:
        return f"{alias}-v{version}"


def index_names(prefix: str) -> IndexNames:
    return IndexNames(items=f"{prefix}-items", catalogs=f"{prefix}-catalogs")


# --- ids -----------------------------------------------------------------------------------------

def catalog_key(bpp_id: str, catalog_id: str) -> str:
    """Short fixed-length id of a (publisher, catalog): safe in doc ids and terms lists."""
    return hashlib.blake2b(f"{bpp_id}\x1f{catalog_id}".encode(), digest_size=12).hexdigest()


def cg_of(ckey: str, gen: str) -> str:
    return f"{ckey}.{gen}"


def ckey_of(cg: str) -> str:
    return cg.split(".", 1)[0]


def item_doc_id(cg: str, item_id: str) -> str:
    return f"{cg}:{hashlib.blake2b(item_id.encode(), digest_size=12).hexdigest()}"


def meta_doc_id(cg: str) -> str:
    return f"m:{cg}"


# --- bodies ---------------------------------------------------------------------------------------

_enc = msgspec.msgpack.Encoder()
_item_dec = msgspec.msgpack.Decoder(ItemDoc)
_meta_dec = msgspec.msgpack.Decoder(CatalogMeta)


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def decode_item(d: str) -> ItemDoc:
    return _item_dec.decode(base64.b64decode(d))


def decode_meta(src: dict[str, Any]) -> CatalogMeta:
    meta = _meta_dec.decode(base64.b64decode(src["m"]))
    raw = src.get("raw")
    if raw:
        meta.raw = unpack(base64.b64decode(raw))
    return meta


def daily_ranges(win: tuple[int, int]) -> list[dict[str, int]]:
    """A daily window (local seconds, may wrap, start == end = whole day) as integer ranges."""
    start, end = int(win[0]), int(win[1])
    if start == end:
        return [{"gte": 0, "lte": DAY}]
    if start < end:
        return [{"gte": start, "lte": end}]
    return [{"gte": start, "lte": DAY}, {"gte": 0, "lte": end}]


def instant_range(a: float, b: float) -> dict[str, int]:
    """An instant interval in epoch millis, widened outward to whole millis (a superset)."""
    lo, hi = min(a, b), max(a, b)
    return {"gte": math.floor(lo * 1000), "lte": math.ceil(hi * 1000)}


_MAX_DOUBLE = 1.7976931348623157e308


def big(x: float) -> float:
    """JSON has no infinity: clamp to the largest double (order and range tests unchanged)."""
    return max(-_MAX_DOUBLE, min(_MAX_DOUBLE, x))


def _finite(x: float | None) -> float | None:
    """A number ES can store (infinities clamped), None for None/NaN (which no range test matches)."""
    if x is None or x != x:
        return None
    return big(x)


def item_body(item: ItemDoc, meta: CatalogMeta, cg: str, gen: str, ts: float) -> dict[str, Any]:
    body = _item_fields(item, meta, cg, gen, ts)
    body["d"] = _b64(_enc.encode(item))
    return body


def item_source(item: ItemDoc, meta: CatalogMeta, cg: str, gen: str, ts: float) -> bytes:
    """`item_body` as JSON, the blob spliced in as bytes (never a str for orjson to scan again)."""
    return _with_blobs(_item_fields(item, meta, cg, gen, ts), (b"d", _enc.encode(item)))


def _with_blobs(fields: dict[str, Any], *blobs: tuple[bytes, bytes]) -> bytes:
    parts = [orjson.dumps(fields)[:-1]]
    for name, data in blobs:
        parts += (b',"', name, b'":"', binascii.b2a_base64(data, newline=False), b'"')
    parts.append(b"}")
    return b"".join(parts)


def _item_fields(item: ItemDoc, meta: CatalogMeta, cg: str, gen: str, ts: float) -> dict[str, Any]:
    # Only what some query reads is written (docs/decisions.md §P "Elasticsearch documents"): no ckey,
    # has_windows or nested offers, which the mapping still lists for documents written before.
    body: dict[str, Any] = {"cg": cg, "gen": gen, "ts": ts}
    for f in KEYWORD_FIELDS:
        v = getattr(item, f)
        if v is not None and v != []:
            body[f] = v
    for f in NUMERIC_FIELDS:
        v = getattr(item, f)
        if v is not None:
            v = _finite(v)
            if v is not None:
                body[f] = v
    if item.reservation is not None:
        body["reservation"] = item.reservation
    body["is_active"] = item.is_active
    if item.lon is not None and item.lat is not None and -180 <= item.lon <= 180 and -90 <= item.lat <= 90:
        body["loc"] = [item.lon, item.lat]
    windows = [instant_range(a, b) for a, b in item.windows if math.isfinite(a) and math.isfinite(b)]
    if windows:
        body["windows"] = windows
    if item.daily_windows:
        body["daily"] = [r for w in item.daily_windows for r in daily_ranges(w)]
    if item.terms:
        body["terms"] = item.terms
    if _finite(meta.expires_at) is not None:
        body["exp"] = _finite(meta.expires_at)
    if _finite(meta.valid_from) is not None:
        body["cat_from"] = _finite(meta.valid_from)
    body["cat_active"] = meta.is_active
    body["live"] = meta.live
    ends = [v for v in (_finite(o.valid_to) for o in item.offers if o.valid_to is not None) if v is not None]
    if ends:
        body["offers_end"] = min(ends)
    return body


def meta_body(meta: CatalogMeta, cg: str, gen: str, ts: float) -> dict[str, Any]:
    body = _meta_fields(meta, cg, gen, ts)
    body["m"] = _b64(_enc.encode(msgspec.structs.replace(meta, raw=b"")))
    if meta.raw:
        body["raw"] = _b64(pack(meta.raw))
    return body


def meta_source(meta: CatalogMeta, cg: str, gen: str, ts: float) -> bytes:
    """`meta_body` as JSON, the blobs spliced in as bytes. The catalog's JSON is stored packed (`cds.core.rawjson`):
    a 20-connector catalog's ~50 KB shrink ~12 times, a third of the bytes Elasticsearch parses, compresses and
    logs per connector (docs/decisions.md §P "Elasticsearch documents"); documents written before hold it plain,
    and `decode_meta` reads both."""
    blobs = [(b"m", _enc.encode(msgspec.structs.replace(meta, raw=b"")))]
    if meta.raw:
        blobs.append((b"raw", pack(meta.raw)))
    return _with_blobs(_meta_fields(meta, cg, gen, ts), *blobs)


def _meta_fields(meta: CatalogMeta, cg: str, gen: str, ts: float) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "meta", "cg": cg, "ckey": ckey_of(cg), "gen": gen, "ts": ts,
        "bpp_id": meta.bpp_id, "catalog_id": meta.catalog_id, "published_at": _finite(meta.published_at),
        "is_active": meta.is_active, "live": meta.live, "item_count": meta.item_count,
    }
    if _finite(meta.expires_at) is not None:
        body["expires_at"] = _finite(meta.expires_at)
    if _finite(meta.valid_from) is not None:
        body["valid_from"] = _finite(meta.valid_from)
    return body


# --- bootstrap and migration ----------------------------------------------------------------------

class IndexStateError(RuntimeError):
    """The cluster's indices are not in a state this code can use (reported, never auto-fixed)."""


def _upgrade_source(src: dict[str, Any], from_version: int) -> dict[str, Any]:
    """Turn a document of an older mapping version into the current one, rebuilding derived fields from the
    `d` blob. 1 -> 2: the item's analysed terms replace its whitespace-separated words."""
    if from_version < 2 and "d" in src:
        item = upgrade_terms(decode_item(src["d"]))
        src.pop("words", None)
        src.pop("long_words", None)
        if item.terms:
            src["terms"] = item.terms
        src["d"] = _b64(_enc.encode(item))
    return src


async def alias_target(es: AsyncElasticsearch, alias: str) -> str | None:
    """The concrete index behind `alias`, None if the alias does not exist."""
    try:
        resp = await es.indices.get_alias(name=alias)
    except NotFoundError:
        return None
    names = sorted(resp.body)
    if len(names) != 1:
        raise IndexStateError(f"alias {alias} points at {names}; expected exactly one index")
    return names[0]


def version_of(index: str, alias: str) -> int | None:
    tail = index[len(alias):]
    if index.startswith(alias) and tail.startswith("-v") and tail[2:].isdigit():
        return int(tail[2:])
    return None


async def _copy(es: AsyncElasticsearch, src_index: str, dst_index: str, from_version: int) -> int:
    from elasticsearch.helpers import async_bulk, async_scan

    async def actions():
        async for hit in async_scan(es, index=src_index, query={"query": {"match_all": {}}}, size=1000):
            yield {"_index": dst_index, "_id": hit["_id"], "_source": _upgrade_source(hit["_source"], from_version)}

    ok, errors = await async_bulk(es, actions(), chunk_size=1000, raise_on_error=False, refresh="wait_for")
    if errors:
        raise IndexStateError(f"migration {src_index} -> {dst_index}: {len(errors)} docs failed, first: {errors[0]}")
    return ok


async def ensure_index(es: AsyncElasticsearch, alias: str, mapping: dict[str, Any], settings: dict[str, Any]) -> str:
    """Create `alias` -> `{alias}-v{MAPPING_VERSION}`, or migrate an older version behind it.

    Migration copies every doc into the new index, then swaps the alias atomically and deletes the
    old index. Run it with writers stopped (`cds index init` before starting the indexer).
    """
    target = f"{alias}-v{MAPPING_VERSION}"
    current = await alias_target(es, alias)
    if current is None:
        if await es.indices.exists(index=alias):
            raise IndexStateError(f"{alias} is a concrete index, not an alias (created outside `cds index init`?)")
        if await es.indices.exists(index=target):
            # a crashed earlier init: the versioned index exists without its alias
            await es.indices.put_alias(index=target, name=alias)
            return f"{alias}: alias restored -> {target}"
        await es.indices.create(index=target, mappings=mapping, settings=settings, aliases={alias: {}})
        return f"{alias}: created {target}"
    version = version_of(current, alias)
    if version == MAPPING_VERSION:
        # additive mapping changes within a version are applied in place; conflicts raise
        await es.indices.put_mapping(index=current, **{k: v for k, v in mapping.items()})
        return f"{alias}: up to date ({current})"
    if version is None or version > MAPPING_VERSION:
        raise IndexStateError(f"{alias} points at {current}, which this code (mapping v{MAPPING_VERSION}) cannot use")
    if not await es.indices.exists(index=target):
        await es.indices.create(index=target, mappings=mapping, settings=settings)
    copied = await _copy(es, current, target, version)
    await es.indices.update_aliases(actions=[
        {"remove": {"index": current, "alias": alias}},
        {"add": {"index": target, "alias": alias}},
    ])
    await es.indices.delete(index=current)
    return f"{alias}: migrated {current} -> {target} ({copied} docs)"
