"""Matched items (hits) -> wire catalogs, and the on_discover / on_catalog_publish bodies.

`assemble_catalogs` keeps the order of `hits` (already ordered and capped by the matcher): one catalog per
(BPP, catalog id) in order of first appearance, items in hit order (DESIGN §8.8, §8.20). Each catalog holds only
the matched items and the offers that cover at least one of them and are live now (TTL, DESIGN §4). A live
status older than `status_fresh_s` is shown as "Unknown", never as what was last published.
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson

from cds.config import Settings
from cds.dialects import convert_catalog
from cds.models import DIALECT_B, CatalogResult, Context
from cds.matching import offer_live
from cds.timeutil import rfc3339
from indexer.documents import CatalogMeta, Hit, ItemDoc
from indexer.normalize import STATUS_KEYS, attributes_of

UNKNOWN_STATUS = "Unknown"


def status_stale(item: ItemDoc, now: float, settings: Settings) -> bool:
    return item.status is not None and (item.status_at is None or now - item.status_at > settings.status_fresh_s)


def _mark_status_unknown(item: dict) -> None:
    """Overwrite the published live-status field(s) of a decoded item with "Unknown" (upper case when the
    vocabulary is upper case, e.g. `ev:availability: AVAILABLE`)."""
    attrs = attributes_of(item)
    if attrs is None:
        return
    for key, value in attrs.items():
        if key.rsplit(":", 1)[-1] not in STATUS_KEYS:
            continue
        if isinstance(value, str):
            attrs[key] = UNKNOWN_STATUS.upper() if value.isupper() else UNKNOWN_STATUS
        elif isinstance(value, dict) and isinstance(value.get("code"), str):
            attrs[key] = {**value, "code": UNKNOWN_STATUS.upper() if value["code"].isupper() else UNKNOWN_STATUS}


def _item_json(item: ItemDoc, now: float, settings: Settings) -> dict:
    obj = orjson.loads(item.raw)
    if status_stale(item, now, settings):
        _mark_status_unknown(obj)
    return obj


def _catalog(meta: CatalogMeta, items: list[ItemDoc], *, now: float, settings: Settings) -> dict:
    header = orjson.loads(meta.header) if meta.header else {}
    tz = settings.tz
    offers: list[dict] = []
    seen: set[str] = set()
    for it in items:
        for off in it.offers:
            # an offer is shown only through an item it names (empty item_ids: attached by its item alone)
            if off.id in seen or (off.item_ids and it.item_id not in off.item_ids):
                continue
            if offer_live(off, now, tz):
                seen.add(off.id)
                offers.append(orjson.loads(off.raw))
    body = [_item_json(it, now, settings) for it in items]
    if meta.dialect == DIALECT_B:
        header.setdefault("id", meta.catalog_id)
        header["bppId"] = meta.bpp_id
        if meta.bpp_uri:
            header["bppUri"] = meta.bpp_uri
        header["resources"], header["offers"] = body, offers
    else:
        header.setdefault("beckn:id", meta.catalog_id)
        header["beckn:bppId"] = meta.bpp_id
        if meta.bpp_uri:
            header["beckn:bppUri"] = meta.bpp_uri
        header["beckn:items"], header["beckn:offers"] = body, offers
    return header


def assemble_catalogs(hits: list[Hit], *, dialect: str, now: float, settings: Settings) -> list[dict]:
    """Wire catalogs in the requested dialect for ordered, capped hits; `[]` for no hits."""
    groups: dict[tuple[str, str], tuple[CatalogMeta, list[ItemDoc]]] = {}
    for h in hits:
        key = (h.item.bpp_id, h.item.catalog_id)
        if key not in groups:
            groups[key] = (h.catalog, [])
        groups[key][1].append(h.item)
    return [convert_catalog(_catalog(meta, items, now=now, settings=settings), dialect)
            for meta, items in groups.values()]


# --- response bodies ---------------------------------------------------------------------------------

def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None and v != []}


def _context(rc: Context, action: str, *, settings: Settings, now: float,
             sender_is_cds: bool = True) -> dict:
    raw = rc.raw or {}
    if rc.dialect == DIALECT_B:
        return _clean({
            "domain": rc.domain, "action": action, "version": "2.0.0",  # LTS pins version to "2.0.0"
            "bapId": rc.bap_id, "bapUri": rc.bap_uri,
            "bppId": settings.subscriber_id if sender_is_cds else rc.bpp_id,
            "bppUri": settings.subscriber_url if sender_is_cds else rc.bpp_uri,
            "transactionId": rc.transaction_id, "messageId": rc.message_id,
            "networkId": raw.get("networkId") if isinstance(raw.get("networkId"), str) else None,
            "timestamp": rfc3339(now), "ttl": rc.ttl,
            "schemaContext": list(rc.schema_context) or None,
        })
    return _clean({
        "version": rc.version or "2.0.0", "action": action, "domain": rc.domain or settings.domain,
        "bap_id": rc.bap_id, "bap_uri": rc.bap_uri,
        "bpp_id": settings.subscriber_id, "bpp_uri": settings.subscriber_url,
        "transaction_id": rc.transaction_id, "message_id": rc.message_id,
        "timestamp": rfc3339(now), "ttl": rc.ttl,
        "schema_context": list(rc.schema_context) or None,
    })


def build_on_discover(request_context: Context, catalogs: list[dict], *, settings: Settings, now: float) -> dict:
    """The on_discover body in the request's dialect: the BAP's ids and the request's transaction/message ids
    echoed, the CDS as `bpp_id`/`bpp_uri` (beckn-protocol.md §2.1), a fresh timestamp."""
    ctx = _context(request_context, "on_discover", settings=settings, now=now)
    return {"context": ctx, "message": {"catalogs": catalogs}}


def _notice(d: Any) -> dict | None:
    if not isinstance(d, dict):
        return None
    return {"code": str(d.get("code") or "WARNING"), "message": str(d.get("message") or ""),
            **({"paths": d["paths"]} if isinstance(d.get("paths"), str) and d["paths"] else {})}


def _result_a(r: CatalogResult) -> dict:
    out: dict = {"catalog_id": r.catalog_id, "status": r.status}
    if r.status != "REJECTED":
        out["item_count"] = max(0, r.item_count)
    warnings = [w for w in map(_notice, r.warnings) if w]
    if warnings:
        out["warnings"] = warnings
    if r.error:
        out["error"] = _notice(r.error)
    return out


def _result_b(r: CatalogResult) -> dict:
    out: dict = {"catalogId": r.catalog_id, "status": r.status}
    if r.error:
        err = _notice(r.error)
        out["errors"] = [{"errorCode": err["code"], "errorMessage": err["message"],
                          **({"paths": err["paths"]} if "paths" in err else {})}]
    if r.status != "REJECTED":
        out["stats"] = {"itemCount": max(0, r.item_count)}
    warnings = [w for w in map(_notice, r.warnings) if w]
    if warnings:
        out["warnings"] = warnings  # not named by the LTS (the result object is open); kept for the publisher
    return out


def build_on_catalog_publish(request_context: Context, results: Iterable[CatalogResult], *,
                             settings: Settings, now: float) -> dict:
    """The on_catalog_publish body echoing the publish's transaction_id and message_id (DESIGN §8.2).

    Dialect A follows the UBC example (CDS in `bpp_id`/`bpp_uri`; `bap_id`/`bap_uri` echoed when the publisher
    used them, as in the rc spec example; action `on_catalog_publish`, `results[]` with
    catalog_id/status/item_count/warnings/error). Dialect B follows the LTS (`catalog/on_publish`, the
    publisher's own ids echoed as in the LTS example, `results[]` with catalogId/status/errors/stats).
    """
    rc = request_context
    if rc.dialect == DIALECT_B:
        ctx = _context(rc, "catalog/on_publish", settings=settings, now=now, sender_is_cds=False)
        return {"context": ctx, "message": {"results": [_result_b(r) for r in results]}}
    ctx = _context(rc, "on_catalog_publish", settings=settings, now=now)
    return {"context": ctx, "message": {"results": [_result_a(r) for r in results]}}
