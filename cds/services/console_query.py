"""The operator console's discover tester: a small form (a point and radius or a route, connector type,
minimum power, a time window, free text) becomes the discover body a BAP would send in the UBC dialect
(docs/decisions.md §W), so that it goes through the same parser, planner and index as a signed discover, and
the operator can copy it and send it signed to get the same items."""

from __future__ import annotations

import math
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from cds.core import errors as E
from cds.core.timeutil import parse_instant

GEO_TARGET = "$['beckn:itemAttributes.chargingStation.serviceLocation.geo']"
MAX_RADIUS_M = 500_000
MAX_ROUTE_POINTS = 200
_TOKEN = re.compile(r"^[A-Za-z0-9 _.\-]{1,40}$")   # a connector type: safe inside a quoted JSONPath string


def _number(form: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    v = form.get(key)
    if v is None or v == "":
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise E.schema_error(f"{key} must be a number", key)
    try:
        n = float(v)
    except ValueError:
        raise E.schema_error(f"{key} must be a number", key) from None
    if not math.isfinite(n) or not lo <= n <= hi:
        raise E.schema_error(f"{key} must be between {lo:g} and {hi:g}", key)
    return n


def _position(p: Any, key: str) -> list[float]:
    if not (isinstance(p, (list, tuple)) and len(p) == 2):
        raise E.schema_error(f"{key} must be [longitude, latitude]", key)
    lon = _number({"lon": p[0]}, "lon", -180, 180)
    lat = _number({"lat": p[1]}, "lat", -90, 90)
    if lon is None or lat is None:
        raise E.schema_error(f"{key} must be [longitude, latitude]", key)
    return [lon, lat]


def _instant(form: dict[str, Any], key: str, tz: str) -> str | None:
    v = form.get(key)
    if v is None or v == "":
        return None
    at = parse_instant(v, tz) if isinstance(v, str) else None
    if at is None:
        raise E.schema_error(f"{key} must be an ISO-8601 date-time", key)
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spatial(form: dict[str, Any]) -> list[dict[str, Any]]:
    route = form.get("route")
    if route:
        if not isinstance(route, list) or not 2 <= len(route) <= MAX_ROUTE_POINTS:
            raise E.schema_error(f"route must list 2 to {MAX_ROUTE_POINTS} positions", "route")
        meters = _number(form, "radius_m", 1, MAX_RADIUS_M) or 2000
        geometry = {"type": "LineString", "coordinates": [_position(p, "route") for p in route]}
    elif form.get("point") is not None:
        meters = _number(form, "radius_m", 1, MAX_RADIUS_M) or 5000
        geometry = {"type": "Point", "coordinates": _position(form["point"], "point")}
    else:
        return []
    return [{"op": "s_dwithin", "targets": GEO_TARGET, "geometry": geometry, "distanceMeters": int(meters)}]


def discover_body(form: dict[str, Any], *, subscriber_id: str, subscriber_url: str, domain: str, tz: str,
                  now: float | None = None) -> dict[str, Any]:
    """The dialect-A discover for the tester's form, addressed from the CDS itself. BecknError (400) on a bad
    field, naming it."""
    if not isinstance(form, dict):
        raise E.schema_error("the tester form must be a JSON object")
    conds: list[str] = []
    ctype = form.get("connector_type")
    if ctype:
        if not isinstance(ctype, str) or not _TOKEN.match(ctype):
            raise E.schema_error("connector_type must be a short name (letters, digits, _ . - space)",
                                 "connector_type")
        conds.append(f"@.beckn:itemAttributes.connectorType == '{ctype}'")
    min_kw = _number(form, "min_kw", 0, 10_000)
    if min_kw:
        conds.append(f"@.beckn:itemAttributes.maxPowerKW >= {min_kw:g}")
    start, end = _instant(form, "start", tz), _instant(form, "end", tz)
    if start or end:
        if not (start and end) or end < start:
            raise E.schema_error("a time window needs a start before its end", "start")
        conds.append(f"@.beckn:availabilityWindow[?(@.schema:startTime <= '{end}' && @.schema:endTime >= '{start}')]")
    message: dict[str, Any] = {}
    if conds:
        message["filters"] = {"type": "jsonpath", "expression": "$[?(" + " && ".join(conds) + ")]"}
    spatial = _spatial(form)
    if spatial:
        message["spatial"] = spatial
    text = form.get("text")
    if text:
        if not isinstance(text, str):
            raise E.schema_error("text must be a string", "text")
        message["text_search"] = text
    stamp = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    return {"context": {"version": "2.0.0", "action": "discover", "domain": domain, "bap_id": subscriber_id,
                        "bap_uri": subscriber_url, "transaction_id": str(uuid.uuid4()),
                        "message_id": str(uuid.uuid4()), "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
                        "ttl": "PT30S"},
            "message": message}
