"""Reply bodies the CDS signs and sends: `on_discover` to apps, `on_catalog_publish` to publishers, in the
dialect of the request they answer (docs/decisions.md §2, §7)."""

from __future__ import annotations

from typing import Any, Iterable, Protocol

from cds.core.bounds import REJECTION_CODES
from cds.core.models import DIALECT_B, CatalogResult, Context
from cds.core.timeutil import rfc3339


class Sender(Protocol):
    """Who the CDS is on the wire (the service's settings provide it)."""

    subscriber_id: str
    subscriber_url: str
    domain: str


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None and v != []}


def _context(rc: Context, action: str, *, settings: Sender, now: float,
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


def build_on_discover(request_context: Context, catalogs: list[dict], *, settings: Sender, now: float) -> dict:
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
    notices = [w for w in map(_notice, r.warnings) if w]
    # The LTS lists per-item errors of a PARTIAL result in `errors` (items over a bound, docs/decisions.md §27).
    errors = [e for e in [_notice(r.error)] if e] + [w for w in notices if w["code"] in REJECTION_CODES]
    if errors:
        out["errors"] = [{"errorCode": e["code"], "errorMessage": e["message"],
                          **({"paths": e["paths"]} if "paths" in e else {})} for e in errors]
    if r.status != "REJECTED":
        out["stats"] = {"itemCount": max(0, r.item_count)}
    warnings = [w for w in notices if w["code"] not in REJECTION_CODES]
    if warnings:
        out["warnings"] = warnings  # not named by the LTS (the result object is open); kept for the publisher
    return out


def build_on_catalog_publish(request_context: Context, results: Iterable[CatalogResult], *,
                             settings: Sender, now: float) -> dict:
    """The on_catalog_publish body echoing the publish's transaction_id and message_id (docs/decisions.md §W).

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
