"""Parse Beckn v2 bodies (both dialects) into the typed model, and build ACK/NACK bodies.

Checks run in the order of docs/decisions.md §12: JSON → context (here) → signature (cds.trust.auth) →
authorisation → schema/query. Everything here raises BecknError, never anything else.
"""

from __future__ import annotations

import functools
import time
from datetime import timezone
from typing import Any

import msgspec
import orjson

from cds.core import errors as E
from cds.core.errors import BecknError
from cds.core.models import DIALECT_A, DIALECT_B, Context, DiscoverIntent, DiscoverRequest, PublishRequest, SpatialSpec
from cds.core.timeutil import parse_duration, parse_instant

MAX_ID_LEN = 256
_UTC = timezone.utc
MAX_SPATIAL = 8
MAX_TEXT = 512
MAX_CATALOGS = 1000

# Dialect-B (camelCase) context keys and their dialect-A names.
_B_KEYS = {
    "bapId": "bap_id", "bapUri": "bap_uri", "bppId": "bpp_id", "bppUri": "bpp_uri",
    "transactionId": "transaction_id", "messageId": "message_id", "schemaContext": "schema_context",
}

_A_TO_B = {a: b for b, a in _B_KEYS.items()}
_B_KEY_SET = frozenset(_B_KEYS)
_A_KEY_SET = frozenset(_B_KEYS.values())
_PEEKED = tuple((a, _A_TO_B[a]) for a in ("transaction_id", "message_id", "bap_id", "bpp_id"))
# parse_context's string fields: (dialect-A name, dialect-B name or None)
_CTX_FIELDS = tuple((a, b) for b, a in _B_KEYS.items() if a != "schema_context") + tuple(
    (n, None) for n in ("version", "domain", "timestamp", "ttl"))

# Actions accepted on each route family, per dialect spelling.
PUBLISH_ACTIONS = {"catalog_publish", "catalog/publish"}


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BecknError(E.SCH_INVALID_JSON, f"body is not valid JSON: {e}", 400) from None


SKELETON_MIN_BYTES = 1 << 20      # publish bodies from this size on are read as a skeleton before the ACK
_SKELETON_VALUE_BYTES = 64 << 10  # catalog values larger than this (items, offers) stay undecoded


class _SkeletonMessage(msgspec.Struct):
    catalogs: list[dict[str, msgspec.Raw]] | msgspec.UnsetType = msgspec.UNSET
    publishDirectives: Any = msgspec.UNSET


class _PublishSkeleton(msgspec.Struct):
    context: Any = msgspec.UNSET
    message: _SkeletonMessage | msgspec.UnsetType = msgspec.UNSET
    catalogs: list[dict[str, msgspec.Raw]] | msgspec.UnsetType = msgspec.UNSET


_skeleton = msgspec.json.Decoder(_PublishSkeleton)


def parse_publish_json(body: bytes) -> Any:
    """A publish body as `parse_json` reads it for the checks before the ACK (context, signer, ownership, the
    catalog list: `parse_context`, `parse_publish`), except that in a large body the big values inside each
    catalog (its items and offers) are left undecoded (`msgspec.Raw`) and keys those checks never read are
    left out; the ingest process parses the whole body again. Decoding 95 MB of items on a serving loop took
    seconds (docs/decisions.md §24); skipping them is one C scan. A body of any other shape is parsed in full,
    so errors and their codes stay those of `parse_json`."""
    if len(body) < SKELETON_MIN_BYTES:
        return parse_json(body)
    try:
        sk = _skeleton.decode(body)
    except msgspec.DecodeError:
        return parse_json(body)
    doc: dict[str, Any] = {}
    if sk.context is not msgspec.UNSET:
        doc["context"] = sk.context
    if sk.catalogs is not msgspec.UNSET:
        doc["catalogs"] = _catalogs(sk.catalogs)
    if sk.message is not msgspec.UNSET:
        msg: dict[str, Any] = {}
        if sk.message.catalogs is not msgspec.UNSET:
            msg["catalogs"] = _catalogs(sk.message.catalogs)
        if sk.message.publishDirectives is not msgspec.UNSET:
            msg["publishDirectives"] = sk.message.publishDirectives
        doc["message"] = msg
    return doc


def _catalogs(cats: list[dict[str, msgspec.Raw]]) -> list[dict[str, Any]]:
    return [{k: (v if memoryview(v).nbytes > _SKELETON_VALUE_BYTES else msgspec.json.decode(v)) for k, v in c.items()}
            for c in cats]


def detect_dialect(doc: Any) -> str:
    """B when the context uses camelCase ids or the message has an `intent`; A otherwise."""
    if not isinstance(doc, dict):
        return DIALECT_A
    ctx = doc.get("context")
    if isinstance(ctx, dict):
        if not _B_KEY_SET.isdisjoint(ctx):
            return DIALECT_B
        if not _A_KEY_SET.isdisjoint(ctx):
            return DIALECT_A
    msg = doc.get("message")
    if isinstance(msg, dict) and "intent" in msg:
        return DIALECT_B
    return DIALECT_A


def peek_ids(doc: Any) -> dict[str, str | None]:
    """The context's ids as sent, in either dialect, before (or although) the context is refused: for the log
    line of every request whose body is JSON. Only strings, cut to MAX_ID_LEN; never raises."""
    ctx = doc.get("context") if isinstance(doc, dict) else None
    if not isinstance(ctx, dict):
        return dict.fromkeys(a for a, _ in _PEEKED)
    out: dict[str, str | None] = {}
    for a_name, b_name in _PEEKED:
        v = ctx.get(a_name)
        if not isinstance(v, str):
            v = ctx.get(b_name)
        out[a_name] = v[:MAX_ID_LEN] if isinstance(v, str) else None
    return out


def _str_field(ctx: dict, name: str, alt: str | None = None) -> str | None:
    """context.`name` (else its other dialect's spelling `alt`): None when absent, else a non-empty string of at
    most 2048 characters, or a 400 naming the field as it was sent."""
    v = ctx.get(name)
    if v is None and alt is not None:
        name, v = alt, ctx.get(alt)
    if v is None or (isinstance(v, str) and 0 < len(v) <= 2048 and not v.isspace()):
        return v
    raise BecknError(E.CTX_INVALID_FIELD, f"context.{name} must be a non-empty string", 400, f"context.{name}")


def parse_context(doc: Any, *, expected_actions: set[str], now: float | None = None,
                  clock_skew_s: int = 5, dialect: str | None = None) -> Context:
    """Validate the context of an inbound request against the route's expected actions (`dialect`: what
    `detect_dialect(doc)` gave, when the caller has it already)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("context"), dict):
        raise BecknError(E.CTX_MISSING_FIELD, "request has no context object", 400, "context")
    raw = doc["context"]
    dialect = detect_dialect(doc) if dialect is None else dialect
    action = _str_field(raw, "action")
    if action is None:
        raise BecknError(E.CTX_MISSING_FIELD, "context.action is required", 400, "context.action")
    if action not in expected_actions:
        raise BecknError(E.CTX_ACTION_MISMATCH,
                         f"context.action '{action[:64]}' does not match this endpoint "
                         f"(expected {' or '.join(sorted(expected_actions))})", 400, "context.action")
    fields: dict[str, Any] = {}
    for a_name, b_name in _CTX_FIELDS:
        fields[a_name] = _str_field(raw, a_name, b_name)
    for name in ("transaction_id", "message_id", "timestamp"):
        if fields[name] is None:
            n = name if dialect == DIALECT_A else {"transaction_id": "transactionId", "message_id": "messageId"}.get(name, name)
            raise BecknError(E.CTX_MISSING_FIELD, f"context.{n} is required", 400, f"context.{n}")
    for name in ("transaction_id", "message_id"):
        if len(fields[name]) > MAX_ID_LEN:
            raise BecknError(E.CTX_INVALID_FIELD, f"context.{name} is too long", 400, f"context.{name}")
    version = fields["version"]
    if version is not None and not version.startswith("2."):
        raise BecknError(E.CTX_VERSION_UNSUPPORTED, f"version {version[:32]} is not supported (2.x only)", 400, "context.version")
    schema_context = raw.get("schema_context", raw.get("schemaContext", []))
    if isinstance(schema_context, str):
        schema_context = [schema_context]
    if not isinstance(schema_context, list) or len(schema_context) > 32 or not all(isinstance(s, str) for s in schema_context):
        raise BecknError(E.CTX_INVALID_FIELD, "context.schema_context must be a list of URLs", 400, "context.schema_context")
    _check_time(fields["timestamp"], fields["ttl"], now=time.time() if now is None else now, skew=clock_skew_s)
    return Context(dialect=dialect, action=action, schema_context=list(schema_context), raw=raw, **fields)


# apps send the same few TTLs ("PT30S"); bounded
_duration = functools.lru_cache(maxsize=64)(parse_duration)


def _check_time(timestamp: str, ttl: str | None, *, now: float, skew: int) -> None:
    ts = parse_instant(timestamp, _UTC)
    if ts is None:
        raise BecknError(E.CTX_INVALID_FIELD, "context.timestamp must be an RFC 3339 date-time", 400, "context.timestamp")
    # Generous future tolerance: clocks drift; the signature window is the real replay guard.
    if ts > now + max(skew, 300):
        raise BecknError(E.CTX_INVALID_FIELD, "context.timestamp is in the future", 400, "context.timestamp")
    if ttl is not None:
        d = _duration(ttl)
        if d is None or d < 0:
            raise BecknError(E.CTX_INVALID_FIELD, "context.ttl must be an ISO-8601 duration such as PT30S", 400, "context.ttl")
        if ts + d < now - skew:
            raise BecknError(E.CTX_TTL_EXPIRED, f"request expired: timestamp {timestamp} + ttl {ttl} is in the past", 400, "context.ttl")


def parse_discover(doc: dict, ctx: Context) -> DiscoverRequest:
    msg = doc.get("message")
    if msg is None:
        msg = {}
    if not isinstance(msg, dict):
        raise E.schema_error("message must be an object", "message")
    body = msg.get("intent", msg) if ctx.dialect == DIALECT_B or "intent" in msg else msg
    if not isinstance(body, dict):
        raise E.schema_error("message.intent must be an object", "message.intent")
    text = body.get("text_search", body.get("textSearch"))
    if text is not None:
        if isinstance(text, dict):  # some drafts wrap it: {"query": "..."}
            text = text.get("query") or text.get("text")
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise E.schema_error(f"text_search must be a string of at most {MAX_TEXT} characters", "message.text_search")
    filters = body.get("filters")
    ftype, expr = "jsonpath", None
    if isinstance(filters, str):  # DEG/UBC docs send the bare expression
        expr = filters
    elif isinstance(filters, dict):
        ftype = filters.get("type", "jsonpath")
        expr = filters.get("expression")
        if not isinstance(ftype, str) or ftype.lower() != "jsonpath":
            raise BecknError(E.SCH_TYPE_NOT_SUPPORTED, "filters.type must be 'jsonpath'", 400, "message.filters.type")
        if not isinstance(expr, str):
            raise BecknError(E.SCH_REQUIRED_FIELD_MISSING, "filters.expression must be a string", 400, "message.filters.expression")
    elif filters is not None:
        raise E.schema_error("filters must be an object {type, expression} or a string", "message.filters")
    spatial_raw = body.get("spatial", [])
    if isinstance(spatial_raw, dict):
        spatial_raw = [spatial_raw]
    if not isinstance(spatial_raw, list) or len(spatial_raw) > MAX_SPATIAL:
        raise E.schema_error(f"spatial must be a list of at most {MAX_SPATIAL} constraints", "message.spatial")
    spatial = [_parse_spatial(s, i) for i, s in enumerate(spatial_raw)]
    intent = DiscoverIntent(text_search=text, filter_type="jsonpath", expression=expr, spatial=spatial,
                            schema_context=ctx.schema_context)
    return DiscoverRequest(context=ctx, intent=intent, message=msg)


def _parse_spatial(s: Any, i: int) -> SpatialSpec:
    path = f"message.spatial[{i}]"
    if not isinstance(s, dict):
        raise E.schema_error("spatial constraint must be an object", path)
    op = s.get("op")
    if not isinstance(op, str):
        raise BecknError(E.SCH_REQUIRED_FIELD_MISSING, "spatial constraint needs an op", 400, f"{path}.op")
    targets = s.get("targets", [])
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or len(targets) > 8 or not all(isinstance(t, str) and len(t) < 512 for t in targets):
        raise E.schema_error("targets must be a string or a short list of strings", f"{path}.targets")
    geometry = s.get("geometry")
    if not isinstance(geometry, dict):
        raise BecknError(E.SCH_REQUIRED_FIELD_MISSING, "spatial constraint needs a GeoJSON geometry", 400, f"{path}.geometry")
    dist = s.get("distanceMeters", s.get("distance_meters"))
    if dist is not None and (isinstance(dist, bool) or not isinstance(dist, (int, float))):
        raise E.schema_error("distanceMeters must be a number", f"{path}.distanceMeters")
    if isinstance(dist, int) and not -1e308 < dist < 1e308:     # no float holds it (never an OverflowError)
        raise E.schema_error("distanceMeters is out of range", f"{path}.distanceMeters")
    quant = s.get("quantifier", "any")
    if not isinstance(quant, str):
        raise E.schema_error("quantifier must be a string", f"{path}.quantifier")
    return SpatialSpec(op=op.lower(), targets=targets, geometry=geometry,
                       distance_m=float(dist) if dist is not None else None, quantifier=quant.lower())


def parse_publish(doc: dict, ctx: Context) -> PublishRequest:
    msg = doc.get("message")
    catalogs = msg.get("catalogs") if isinstance(msg, dict) else None
    if catalogs is None:
        catalogs = doc.get("catalogs")  # some examples put catalogs next to context
    if not isinstance(catalogs, list) or not catalogs:
        raise BecknError(E.SCH_REQUIRED_FIELD_MISSING, "message.catalogs must be a non-empty list", 400, "message.catalogs")
    if len(catalogs) > MAX_CATALOGS:
        raise E.schema_error(f"at most {MAX_CATALOGS} catalogs per publish", "message.catalogs")
    for i, c in enumerate(catalogs):
        if not isinstance(c, dict):
            raise E.schema_error("each catalog must be an object", f"message.catalogs[{i}]")
    mode = "FULL"
    directives = (msg.get("publishDirectives") if isinstance(msg, dict) else None) or {}
    if isinstance(directives, dict) and isinstance(directives.get("updateMode"), str):
        mode = directives["updateMode"].upper()
    else:
        first = catalogs[0].get("publishDirectives")  # deprecated per-catalog location in LTS
        if isinstance(first, dict) and isinstance(first.get("updateMode"), str):
            mode = first["updateMode"].upper()
    if mode not in ("FULL", "MERGE"):
        raise E.schema_error("publishDirectives.updateMode must be FULL or MERGE", "message.publishDirectives.updateMode")
    return PublishRequest(context=ctx, catalogs=catalogs, update_mode=mode)


# ---- ACK / NACK bodies ----------------------------------------------------------------------

_ACK_A = orjson.dumps({"message": {"ack": {"status": "ACK"}}})
_ACK_B = orjson.dumps({"status": "ACK"})


def ack_body(dialect: str) -> bytes:
    return _ACK_B if dialect == DIALECT_B else _ACK_A


def nack_body(err: BecknError, dialect: str) -> bytes:
    error: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.paths:
        error["paths"] = err.paths
    if dialect == DIALECT_B:
        error.update(errorCode=err.code, errorMessage=err.message)
        return orjson.dumps({"status": "NACK", "error": error})
    return orjson.dumps({"message": {"ack": {"status": "NACK"}}, "error": error})
