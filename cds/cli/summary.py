"""The few lines `cds request` prints after the JSON, so that "no match", "refused" and "broken" read
differently: the HTTP status with ACK/NACK and the NACK code, then what the answer holds (catalogs and items
per BPP for an `on_discover`, per-catalog results for an `on_catalog_publish`) in either dialect."""

from __future__ import annotations

from collections import Counter
from typing import Any

from cds.core.fields import as_list, pick


def _message(doc: Any) -> dict:
    msg = doc.get("message") if isinstance(doc, dict) else None
    return msg if isinstance(msg, dict) else {}


def ack_status(doc: Any) -> str | None:
    """"ACK" / "NACK" from either dialect's ACK body (`message.ack.status` or a top-level `status`)."""
    if not isinstance(doc, dict):
        return None
    ack = _message(doc).get("ack")
    status = ack.get("status") if isinstance(ack, dict) else doc.get("status")
    return status if isinstance(status, str) else None


def action_of(doc: Any) -> str | None:
    ctx = doc.get("context") if isinstance(doc, dict) else None
    action = ctx.get("action") if isinstance(ctx, dict) else None
    return action if isinstance(action, str) else None


def reply_line(http_status: int, doc: Any, elapsed_ms: float) -> str:
    """`HTTP 200 ACK in 2.1 ms`, `HTTP 400 NACK in 1.0 ms: CTX_ACTION_MISMATCH: ...`, `HTTP 200 on_discover in …`."""
    out = f"HTTP {http_status}"
    action = action_of(doc)
    status = ack_status(doc)
    if status:
        out += f" {status}"
    elif action:
        out += f" {action}"
    elif doc is None:
        out += " (not JSON)"
    out += f" in {elapsed_ms:.1f} ms"
    err = doc.get("error") if isinstance(doc, dict) else None
    code, text = (err.get("code") or err.get("errorCode"), err.get("message") or err.get("errorMessage")) \
        if isinstance(err, dict) else (None, None)
    if code or text:
        out += f": {code or 'error'}" + (f": {str(text)[:200]}" if text else "")
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def result_lines(doc: Any) -> list[str]:
    """What an `on_discover` or `on_catalog_publish` body holds; [] for anything else (an ACK)."""
    msg = _message(doc)
    if isinstance(msg.get("results"), list):
        return _publish_results(msg["results"])
    if isinstance(msg.get("catalogs"), list):
        return _catalogs(msg["catalogs"])
    return []


def _catalogs(catalogs: list) -> list[str]:
    per_bpp: dict[str, Counter] = {}
    for cat in catalogs:
        if not isinstance(cat, dict):
            continue
        bpp = pick(cat, "bppId")
        items = next((v for v in (pick(cat, "items"), cat.get("resources")) if isinstance(v, list)), [])
        c = per_bpp.setdefault(str(bpp or "(no bppId)"), Counter())
        c["catalogs"] += 1
        c["items"] += len(items)
    total = sum(c["items"] for c in per_bpp.values())
    if not total:
        return [f"results:  no matching items ({_plural(len(catalogs), 'catalog')})"]
    lines = [f"results:  {_plural(total, 'item')} in {_plural(sum(c['catalogs'] for c in per_bpp.values()), 'catalog')}"
             f" from {_plural(len(per_bpp), 'BPP')}"]
    for bpp, c in sorted(per_bpp.items(), key=lambda kv: (-kv[1]["items"], kv[0])):
        lines.append(f"  {bpp}: {_plural(c['catalogs'], 'catalog')}, {_plural(c['items'], 'item')}")
    return lines


def _publish_results(results: list) -> list[str]:
    lines = [f"results:  {_plural(len(results), 'catalog')}"]
    for r in results:
        if not isinstance(r, dict):
            continue
        cid = r.get("catalog_id") or r.get("catalogId")
        line = f"  {cid}: {r.get('status')}"
        stats = r.get("stats") if isinstance(r.get("stats"), dict) else {}
        count = r.get("item_count", stats.get("itemCount"))
        if isinstance(count, int):
            line += f", {_plural(int(count), 'item')}"
        warnings = as_list(r.get("warnings"))
        if warnings:
            line += f", {_plural(len(warnings), 'warning')}"
        errors = [e for e in [r.get("error"), *as_list(r.get("errors"))] if isinstance(e, dict)]
        for e in errors[:1]:
            line += f" ({e.get('code') or e.get('errorCode')}: {str(e.get('message') or e.get('errorMessage'))[:200]})"
        lines.append(line)
    return lines
