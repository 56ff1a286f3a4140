"""Attribute-pack names from JSON-LD context URLs: the one rule shared by published items and discover
requests, so whatever form a URL takes at publish is matched at discover (docs/decisions.md §4)."""

from __future__ import annotations

import re
from typing import Any

MAX_URL_CHARS = 2048
# `…/<Pack>/<version>/context.jsonld`: the branch part of the URL before the pack varies, so only the
# last two segments name the pack. Versions come as v1, v2.0, v2-beta, ...
_PACK_RE = re.compile(r"([^/]+)/(v[^/]+)/context\.jsonld$")


def pack_name(url: Any) -> str | None:
    """`…/schema/EvChargingService/v1/context.jsonld?x=1` -> "EvChargingService/v1"; the core context -> None."""
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        return None
    m = _PACK_RE.search(url.strip().split("?")[0].split("#")[0])
    if not m or m.group(1).lower() == "core":
        return None
    return f"{m.group(1)}/{m.group(2)}"


def pack_of_attributes(attrs: Any) -> str | None:
    """The pack of an item's attribute object: its `@context` URL, or the first pack URL of a list."""
    ctx = attrs.get("@context") if isinstance(attrs, dict) else None
    for url in ctx if isinstance(ctx, list) else [ctx]:
        name = pack_name(url)
        if name:
            return name
    return None


def schema_packs(urls: Any) -> frozenset[str] | None:
    """The packs a discover's `schema_context` narrows to (None: no narrowing)."""
    names = {n for n in (pack_name(u) for u in urls or []) if n} if isinstance(urls, list) else set()
    return frozenset(names) if names else None
