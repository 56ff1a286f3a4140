"""Typed internal model of Beckn messages, shared by both dialects.

Dialect "A" = v2.0.0-rc as spoken by UBC/DEG (snake_case context, message.filters/spatial,
`beckn:`-prefixed catalogs). Dialect "B" = v2.0.0 LTS (camelCase context, message.intent,
`resources`). `cds.core.protocol` parses raw bodies into these structs.
"""

from __future__ import annotations

from typing import Any

import msgspec

DIALECT_A = "A"
DIALECT_B = "B"


class Context(msgspec.Struct, kw_only=True):
    dialect: str
    action: str
    version: str | None = None
    domain: str | None = None
    bap_id: str | None = None
    bap_uri: str | None = None
    bpp_id: str | None = None
    bpp_uri: str | None = None
    transaction_id: str | None = None
    message_id: str | None = None
    timestamp: str | None = None
    ttl: str | None = None
    schema_context: list[str] = []
    raw: dict[str, Any] = {}                 # the context object exactly as received


class SpatialSpec(msgspec.Struct, kw_only=True):
    op: str                                  # lower case: s_dwithin, s_within, s_intersects ...
    targets: list[str] = []
    geometry: dict[str, Any] | None = None   # GeoJSON, [lon, lat]
    distance_m: float | None = None
    quantifier: str = "any"


class DiscoverIntent(msgspec.Struct, kw_only=True):
    text_search: str | None = None
    filter_type: str = "jsonpath"
    expression: str | None = None
    spatial: list[SpatialSpec] = []
    schema_context: list[str] = []           # from context.schema_context / schemaContext


class DiscoverRequest(msgspec.Struct, kw_only=True):
    context: Context
    intent: DiscoverIntent
    message: dict[str, Any] = {}             # the message as received (forwarded unchanged on fan-out)


class PublishRequest(msgspec.Struct, kw_only=True):
    context: Context
    catalogs: list[dict[str, Any]] = []      # catalogs as received (either dialect)
    update_mode: str = "FULL"                # FULL | MERGE (LTS publishDirectives.updateMode)


class CatalogResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Per-catalog outcome reported in on_catalog_publish."""

    catalog_id: str
    status: str                              # ACCEPTED | REJECTED | PARTIAL
    item_count: int = 0
    error: dict[str, Any] | None = None
    warnings: list[dict[str, Any]] = []
