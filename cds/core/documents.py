"""Index documents: what a published catalog becomes inside the CDS.

One `ItemDoc` per connector item, self-contained (it carries the offers that reference it),
plus one `CatalogMeta` per (publisher, catalog). Both storage backends store exactly these;
`cds.core.normalize` builds them and `cds.services.assemble` turns hits back into wire catalogs.
Times are epoch seconds (UTC). Raw JSON is kept as compact bytes, decoded only when needed; a storage
backend may keep it packed (`cds.core.rawjson`), so read it through `item_json` / `offer_json`.
The document structs are `gc=False`: they never form reference cycles, and at a million connectors
the cyclic collector would otherwise walk every one of them on each full collection.
"""

from __future__ import annotations

import msgspec

from cds.core.rawjson import unpack
from cds.core.text import document_terms


class OfferDoc(msgspec.Struct, kw_only=True, gc=False):
    id: str
    item_ids: list[str] = []
    is_active: bool = True
    valid_from: float | None = None          # validity start instant (UTC epoch)
    valid_to: float | None = None            # validity end instant (UTC epoch)
    # Recurring daily window in the network's local time, seconds since local midnight.
    # start > end means the window wraps past midnight (22:00-06:00).
    daily: tuple[int, int] | None = None
    price: float | None = None
    currency: str | None = None
    unit: str | None = None                  # unitCode: KWH, MIN, H, MON ...
    tariff_model: str | None = None          # PER_KWH, PER_MINUTE, SUBSCRIPTION, TIME_OF_DAY
    payment_methods: list[str] = []
    raw: bytes = b""                         # the offer as published (compact JSON, maybe packed: offer_json)


class ItemDoc(msgspec.Struct, kw_only=True, gc=False):
    bpp_id: str                              # publisher subscriber id (the signer)
    catalog_id: str
    item_id: str
    provider_id: str | None = None
    provider_name: str | None = None
    lon: float | None = None                 # station location (GeoJSON order lon, lat)
    lat: float | None = None
    connector_type: str | None = None        # canonical spelling (CCS2, Type2, CHAdeMO, GB_T ...)
    max_kw: float | None = None
    min_kw: float | None = None
    power_type: str | None = None            # AC_SINGLE_PHASE | AC_3_PHASE | DC
    charging_speed: str | None = None
    vehicle_types: list[str] = []            # 2-WHEELER | 3-WHEELER | 4-WHEELER
    reservation: bool | None = None
    amenities: list[str] = []
    parking_type: str | None = None
    station_id: str | None = None
    evse_id: str | None = None
    qr: str | None = None
    is_active: bool = True
    windows: list[tuple[float, float]] = []  # availability windows given as instants (UTC epoch)
    daily_windows: list[tuple[int, int]] = []  # availability windows given as times of day (local seconds)
    status: str | None = None                # live status as published (stationStatus ...)
    status_at: float | None = None           # when that status was published
    # Analysed terms of the text fields (cds.core.text, docs/decisions.md §25): sorted, distinct.
    terms: list[str] = []
    text: str = ""                           # before terms were stored: the lower-cased text (see upgrade_terms)
    pack: str | None = None                  # attribute pack, e.g. "EvChargingService/v1"
    offers: list[OfferDoc] = []
    raw: bytes = b""                         # the item as published (compact JSON, maybe packed: item_json)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.bpp_id, self.catalog_id, self.item_id)


def status_stale(status_at: float | None, now: float, fresh_s: float) -> bool:
    """A published live status read at `status_at` is no longer trusted at `now` (docs/decisions.md §S: older
    than `status_fresh_s`, or of unknown age): it is "Unknown", in answers and in filters alike."""
    return status_at is None or now - status_at > fresh_s


def item_json(item: ItemDoc) -> bytes:
    """The item as published (compact JSON), however it is stored."""
    return unpack(item.raw)


def offer_json(offer: OfferDoc) -> bytes:
    """The offer as published (compact JSON), however it is stored."""
    return unpack(offer.raw)


def plain_json(item: ItemDoc) -> ItemDoc:
    """A copy of `item` (and its offers) with the stored JSON unpacked: for comparing documents by value."""
    offers = [msgspec.structs.replace(o, raw=offer_json(o)) for o in item.offers]
    return msgspec.structs.replace(item, raw=item_json(item), offers=offers)


def upgrade_terms(item: ItemDoc) -> ItemDoc:
    """An item stored before analysed terms were (it carries only `text`, its lower-cased text fields and
    not yet its amenities) gets its terms; every stored item passes here when it is loaded or migrated."""
    if item.text and not item.terms:
        item.terms = document_terms((item.text, *item.amenities))
        item.text = ""
    return item


class CatalogMeta(msgspec.Struct, kw_only=True, gc=False):
    bpp_id: str
    catalog_id: str
    bpp_uri: str | None = None
    dialect: str = "A"                       # "A" (v2.0.0-rc / UBC) or "B" (v2.0.0 LTS)
    published_at: float = 0.0
    expires_at: float | None = None          # min(validity end, published_at + max age)
    valid_from: float | None = None
    is_active: bool = True
    item_count: int = 0
    header: bytes = b""                      # catalog JSON without items/resources and offers
    raw: bytes = b""                         # the whole catalog as published (for MERGE)
    live: bool = False                       # True for short-lived data from a fan-out reply

    @property
    def key(self) -> tuple[str, str]:
        return (self.bpp_id, self.catalog_id)


class CatalogRecord(msgspec.Struct, kw_only=True):
    """A whole catalog, ready to be written atomically."""

    meta: CatalogMeta
    items: list[ItemDoc] = []


class Hit(msgspec.Struct, kw_only=True):
    """One matched item with its catalog and, when the query has a location, its distance in metres."""

    item: ItemDoc
    catalog: CatalogMeta
    distance: float | None = None
