"""The typed fields a filter path can name: for each target (item, offer, catalog header, availability window,
raw JSON) the paths that read an attribute of the indexed document instead of its published JSON.

Paths are in the canonical vocabulary (`cds.core.path_names`); string literals compared with a vocabulary field are
canonicalised the way indexing canonicalises the stored value (`cds.core.vocab`), so both compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from cds.core import vocab
from cds.core.documents import item_json, offer_json
from cds.core.filter_values import Ctx
from cds.core.jsonpath_ast import Name, Path


@dataclass(frozen=True, slots=True)
class Field:
    attr: str
    kind: str                                   # str | num | bool | list | status
    canon: Callable[[Any], Any] | None = None   # applied to string literals (vocabularies)
    typed_exists: bool = True                   # False: the typed default hides absence; test on JSON


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    fields: dict[tuple[str, ...], Field]
    raw: Callable[[Any, Ctx], Any] | None       # the target's JSON, for paths that are not typed


ITEM_FIELDS = {
    ("itemAttributes", "connectorType"): Field("connector_type", "str", vocab.connector_type),
    ("itemAttributes", "maxPowerKW"): Field("max_kw", "num"),
    ("itemAttributes", "minPowerKW"): Field("min_kw", "num"),
    ("itemAttributes", "powerType"): Field("power_type", "str", vocab.power_type),
    ("itemAttributes", "vehicleType"): Field("vehicle_types", "list", vocab.vehicle_type),
    ("itemAttributes", "evseId"): Field("evse_id", "str"),
    ("itemAttributes", "qrIdentifier"): Field("qr", "str"),
    ("itemAttributes", "chargingStation", "id"): Field("station_id", "str"),
    ("id",): Field("item_id", "str"),
    ("provider", "id"): Field("provider_id", "str"),
    ("provider", "descriptor", "name"): Field("provider_name", "str"),
    ("itemAttributes", "parkingType"): Field("parking_type", "str"),
    ("itemAttributes", "amenityFeature"): Field("amenities", "list", vocab.upper),
    ("itemAttributes", "reservationSupported"): Field("reservation", "bool"),
    ("itemAttributes", "chargingSpeed"): Field("charging_speed", "str", vocab.upper),
    ("isActive",): Field("is_active", "bool", typed_exists=False),
    ("itemAttributes", "stationStatus"): Field("status", "status"),
    ("itemAttributes", "availability"): Field("status", "status"),
}
OFFER_FIELDS = {
    ("id",): Field("id", "str"),
    ("price", "value"): Field("price", "num"),
    ("price", "currency"): Field("currency", "str"),
    ("price", "applicableQuantity", "unitCode"): Field("unit", "str", vocab.upper),
    ("considerations", "considerationAttributes", "price"): Field("price", "num"),
    ("considerations", "considerationAttributes", "priceCurrency"): Field("currency", "str"),
    ("considerations", "considerationAttributes", "unitCode"): Field("unit", "str", vocab.upper),
    ("offerAttributes", "tariffModel"): Field("tariff_model", "str", vocab.upper),
    ("acceptedPaymentMethod",): Field("payment_methods", "list", vocab.upper),
    ("items",): Field("item_ids", "list"),
    ("isActive",): Field("is_active", "bool", typed_exists=False),
}
CATALOG_FIELDS = {
    ("id",): Field("catalog_id", "str"),
    ("bppId",): Field("bpp_id", "str"),
    ("bppUri",): Field("bpp_uri", "str"),
    ("isActive",): Field("is_active", "bool", typed_exists=False),
}
# ItemDoc attributes a backend can narrow on (Query.terms / Query.ranges), from ITEM and CATALOG fields.
TERM_KINDS = ("str", "list")

ITEM = Target("item", ITEM_FIELDS, lambda d, ctx: ctx.json_of(d, item_json))
OFFER = Target("offer", OFFER_FIELDS, lambda o, ctx: ctx.json_of(o, offer_json))
CATALOG = Target("catalog", CATALOG_FIELDS, lambda m, ctx: ctx.json_of(m, _header))
WINDOW = Target("window", {}, None)          # cur = (kind "i"|"t", start, end)
RAW = Target("raw", {}, lambda j, ctx: j)    # cur = a JSON value


def _header(meta: Any) -> bytes:
    return meta.header


def names_of(path: Path) -> tuple[str, ...] | None:
    if all(isinstance(s, Name) for s in path.segments):
        return tuple(s.name for s in path.segments)
    return None
