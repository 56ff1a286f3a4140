"""cds.services.assemble: hits -> catalogs -> on_discover / on_catalog_publish bodies, validated against both OpenAPIs.

Hits are built by hand (ItemDoc/OfferDoc/CatalogMeta around raw fixture JSON), independent of cds.core.normalize.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import orjson
import pytest

from cds.core.replies import build_on_catalog_publish, build_on_discover
from cds.services.assemble import assemble_catalogs
from cds.config import Settings
from cds.core.models import CatalogResult, Context
from cds.core.documents import CatalogMeta, Hit, ItemDoc, OfferDoc
from cds.core.jsoncache import JsonCache
from indexer.embedded.compact import pack_documents
from tests.schemas import validate_on_catalog_publish, validate_on_discover

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SETTINGS = Settings(subscriber_id="cds.example.com", subscriber_url="https://cds.example.com/beckn")
IST = ZoneInfo("Asia/Kolkata")
NOW = datetime(2026, 1, 4, 12, 30, tzinfo=IST).timestamp()  # inside a 12:00-14:00 lunch promo


def ubc() -> dict:
    doc = json.loads((FIX / "UBC_catalog_publish_ev-charging-catalog-publish.json").read_text(encoding="utf-8"))
    return doc["message"]["catalogs"][0]


def lts() -> dict:
    doc = json.loads((FIX / "spec/examples/lts-constructed/on_discover.json").read_text(encoding="utf-8"))
    return doc["message"]["catalogs"][0]


def meta_for(cat: dict, *, bpp: str, dialect: str, cat_id: str | None = None) -> CatalogMeta:
    header = {k: v for k, v in cat.items() if k not in ("beckn:items", "beckn:offers", "resources", "offers")}
    cid = cat_id or cat.get("beckn:id") or cat["id"]
    if cat_id:
        header["beckn:id" if dialect == "A" else "id"] = cat_id
    return CatalogMeta(bpp_id=bpp, catalog_id=cid, bpp_uri=f"https://{bpp}/beckn", dialect=dialect,
                       published_at=NOW - 60, header=orjson.dumps(header))


def offer_doc(offer: dict, **kw) -> OfferDoc:
    refs = offer.get("beckn:items") or offer.get("resourceIds") or []
    return OfferDoc(id=offer.get("beckn:id") or offer["id"], item_ids=refs, raw=orjson.dumps(offer), **kw)


def item_doc(item: dict, meta: CatalogMeta, offers: list[OfferDoc], **kw) -> ItemDoc:
    return ItemDoc(bpp_id=meta.bpp_id, catalog_id=meta.catalog_id, item_id=item.get("beckn:id") or item["id"],
                   offers=offers, raw=orjson.dumps(item), **kw)


def ubc_hits(bpp: str = "bpp.example.com", order=(0, 1, 2), cat_id: str | None = None, **item_kw) -> list[Hit]:
    cat = ubc()
    meta = meta_for(cat, bpp=bpp, dialect="A", cat_id=cat_id)
    offers = {o["beckn:id"]: offer_doc(o) for o in cat["beckn:offers"]}
    hits = []
    for i in order:
        item = cat["beckn:items"][i]
        mine = [o for o in offers.values() if item["beckn:id"] in o.item_ids]
        hits.append(Hit(item=item_doc(item, meta, mine, **item_kw), catalog=meta))
    return hits


def ctx(dialect: str, action: str = "discover") -> Context:
    if dialect == "A":
        raw = {"version": "2.0.0", "action": action, "domain": "beckn.one:deg:ev-charging", "bap_id": "bap.example.com",
               "bap_uri": "https://bap.example.com/bap", "transaction_id": "2b4d69aa-22e4-4c78-9f56-5a7b9e2b2002",
               "message_id": "a1eabf26-29f5-4a01-9d4e-4c5c9d1a3d02", "timestamp": "2026-01-04T07:00:00Z", "ttl": "PT30S",
               "schema_context": ["https://x/schema/EvChargingService/v1/context.jsonld"]}
        return Context(dialect="A", action=action, version="2.0.0", domain=raw["domain"], bap_id=raw["bap_id"],
                       bap_uri=raw["bap_uri"], transaction_id=raw["transaction_id"], message_id=raw["message_id"],
                       timestamp=raw["timestamp"], ttl="PT30S", schema_context=raw["schema_context"], raw=raw)
    raw = {"version": "2.0.0", "action": action, "bapId": "bap.example.com", "bapUri": "https://bap.example.com/bap",
           "transactionId": "3c5e7a11-8d2f-4b6a-9e10-2f4a6b8c0d12", "messageId": "4d6f8b22-9e30-4c7b-8f21-3a5b7c9d1e23",
           "timestamp": "2026-01-04T07:00:00Z", "ttl": "PT30S"}
    return Context(dialect="B", action=action, version="2.0.0", bap_id=raw["bapId"], bap_uri=raw["bapUri"],
                   transaction_id=raw["transactionId"], message_id=raw["messageId"], timestamp=raw["timestamp"],
                   ttl="PT30S", raw=raw)


def on_discover(hits, dialect):
    cats = assemble_catalogs(hits, dialect=dialect, now=NOW, settings=SETTINGS)
    body = build_on_discover(ctx(dialect), cats, settings=SETTINGS, now=NOW)
    validate_on_discover(body, dialect)
    return body


# --- assembly -----------------------------------------------------------------------------------------------

def test_dialect_a_output_validates_and_carries_the_published_json():
    src = ubc()
    body = on_discover(ubc_hits(), "A")
    [cat] = body["message"]["catalogs"]
    assert cat["beckn:id"] == src["beckn:id"]
    assert (cat["beckn:bppId"], cat["beckn:bppUri"]) == ("bpp.example.com", "https://bpp.example.com/beckn")
    assert cat["beckn:descriptor"] == src["beckn:descriptor"]
    assert cat["beckn:items"] == src["beckn:items"]  # unchanged: same dialect, fresh (no) status
    assert cat["beckn:offers"] == src["beckn:offers"]  # all three are live on 2026-01-04


def test_a_published_requested_in_b_validates_against_lts():
    body = on_discover(ubc_hits(), "B")
    [cat] = body["message"]["catalogs"]
    src = ubc()
    assert cat["id"] == src["beckn:id"] and cat["bppId"] == "bpp.example.com"
    assert [r["id"] for r in cat["resources"]] == [i["beckn:id"] for i in src["beckn:items"]]
    assert [o["resourceIds"] for o in cat["offers"]] == [o["beckn:items"] for o in src["beckn:offers"]]
    assert "bap_id" not in body["context"] and body["context"]["bapId"] == "bap.example.com"


def test_b_published_requested_in_a_validates_against_rc():
    cat = lts()
    meta = meta_for(cat, bpp="bpp.ecopower.example.com", dialect="B")
    res = cat["resources"][0]
    offers = [offer_doc(o) for o in cat["offers"]]
    hits = [Hit(item=item_doc(res, meta, offers), catalog=meta)]
    for dialect in ("A", "B"):
        body = on_discover(hits, dialect)
        [out] = body["message"]["catalogs"]
        if dialect == "A":
            assert out["beckn:items"][0]["beckn:id"] == res["id"]
            assert out["beckn:offers"][0]["beckn:items"] == cat["offers"][0]["resourceIds"]
            assert out["beckn:bppId"] == "bpp.ecopower.example.com"
        else:
            assert out["resources"] == [res] and out["offers"] == cat["offers"]


def test_catalogs_grouped_in_order_of_first_hit_items_in_hit_order():
    h1 = ubc_hits(bpp="bpp-one.example.com", order=(2, 0))
    h2 = ubc_hits(bpp="bpp-two.example.com", order=(1,))
    h3 = ubc_hits(bpp="bpp-one.example.com", order=(1,), cat_id="catalog-other")
    src = ubc()["beckn:items"]
    hits = [h2[0], h1[0], h3[0], h1[1]]
    body = on_discover(hits, "A")
    got = [(c["beckn:bppId"], c["beckn:id"], [i["beckn:id"] for i in c["beckn:items"]]) for c in body["message"]["catalogs"]]
    assert got == [
        ("bpp-two.example.com", ubc()["beckn:id"], [src[1]["beckn:id"]]),
        ("bpp-one.example.com", ubc()["beckn:id"], [src[2]["beckn:id"], src[0]["beckn:id"]]),
        ("bpp-one.example.com", "catalog-other", [src[1]["beckn:id"]]),
    ]
    # each catalog carries only the offers of its own matched items
    for c in body["message"]["catalogs"]:
        ids = {i["beckn:id"] for i in c["beckn:items"]}
        assert c["beckn:offers"] and all(set(o["beckn:items"]) & ids for o in c["beckn:offers"])
        assert len(c["beckn:offers"]) == len(ids)


def test_shared_offer_deduplicated_and_unmatched_offers_left_out():
    cat = ubc()
    items = cat["beckn:items"]
    shared = copy.deepcopy(cat["beckn:offers"][0])
    shared["beckn:id"] = "shared"
    shared["beckn:items"] = [items[0]["beckn:id"], items[1]["beckn:id"]]
    other = cat["beckn:offers"][2]  # names items[2] only, which is not matched
    meta = meta_for(cat, bpp="b", dialect="A")
    s_doc, o_doc = offer_doc(shared), offer_doc(other)
    own = offer_doc(cat["beckn:offers"][1])  # names items[1]
    hits = [Hit(item=item_doc(items[0], meta, [s_doc]), catalog=meta),
            Hit(item=item_doc(items[1], meta, [s_doc, own]), catalog=meta)]
    body = on_discover(hits, "A")
    assert [o["beckn:id"] for o in body["message"]["catalogs"][0]["beckn:offers"]] == ["shared", own.id]
    # an offer that names only an unmatched item is left out even if it reaches the assembler through a hit
    hits = [Hit(item=item_doc(items[0], meta, [o_doc, s_doc]), catalog=meta)]
    body = on_discover(hits, "A")
    assert [o["beckn:id"] for o in body["message"]["catalogs"][0]["beckn:offers"]] == ["shared"]


def _offers_shown(**offer_kw) -> list[str]:
    cat = ubc()
    item, offer = cat["beckn:items"][0], cat["beckn:offers"][0]
    meta = meta_for(cat, bpp="b", dialect="A")
    hits = [Hit(item=item_doc(item, meta, [offer_doc(offer, **offer_kw)]), catalog=meta)]
    out = assemble_catalogs(hits, dialect="A", now=NOW, settings=SETTINGS)
    return [o["beckn:id"] for o in out[0]["beckn:offers"]]


@pytest.mark.parametrize("kw, shown", [
    ({}, True),
    ({"valid_to": NOW - 1}, False),                       # expired
    ({"valid_from": NOW + 1}, False),                     # not yet valid
    ({"valid_from": NOW - 10, "valid_to": NOW + 10}, True),
    ({"is_active": False}, False),
    ({"daily": (12 * 3600, 14 * 3600)}, True),            # lunch promo at 12:30 IST
    ({"daily": (14 * 3600, 16 * 3600)}, False),
    ({"daily": (22 * 3600, 13 * 3600)}, True),            # wraps past midnight, 12:30 inside
    ({"daily": (22 * 3600, 6 * 3600)}, False),
])
def test_only_live_offers_are_shown(kw, shown):
    assert bool(_offers_shown(**kw)) is shown


def test_lunch_promo_evaluated_in_the_network_time_zone():
    utc = Settings(timezone="UTC")
    cat = ubc()
    meta = meta_for(cat, bpp="b", dialect="A")
    doc = offer_doc(cat["beckn:offers"][0], daily=(12 * 3600, 14 * 3600))
    hits = [Hit(item=item_doc(cat["beckn:items"][0], meta, [doc]), catalog=meta)]
    # 12:30 IST is 07:00 UTC: inside the promo in Asia/Kolkata, outside it for a UTC network
    assert assemble_catalogs(hits, dialect="A", now=NOW, settings=SETTINGS)[0]["beckn:offers"]
    assert assemble_catalogs(hits, dialect="A", now=NOW, settings=utc)[0]["beckn:offers"] == []


def _with_status(value: str, key: str = "stationStatus") -> dict:
    item = copy.deepcopy(ubc()["beckn:items"][0])
    item["beckn:itemAttributes"][key] = value
    return item


@pytest.mark.parametrize("age, expected", [(0, "Available"), (SETTINGS.status_fresh_s, "Available"),
                                           (SETTINGS.status_fresh_s + 1, "Unknown")])
def test_stale_status_reads_unknown(age, expected):
    item = _with_status("Available")
    meta = meta_for(ubc(), bpp="b", dialect="A")
    doc = item_doc(item, meta, [], status="Available", status_at=NOW - age)
    for dialect in ("A", "B"):
        [cat] = assemble_catalogs([Hit(item=doc, catalog=meta)], dialect=dialect, now=NOW, settings=SETTINGS)
        out = cat["beckn:items"][0]["beckn:itemAttributes"] if dialect == "A" else cat["resources"][0]["resourceAttributes"]
        assert out["stationStatus"] == expected
    assert orjson.loads(doc.raw)["beckn:itemAttributes"]["stationStatus"] == "Available"  # stored doc untouched


def test_stale_status_keeps_the_vocabulary_case_and_missing_time_is_stale():
    item = _with_status("AVAILABLE", key="ev:availability")
    meta = meta_for(ubc(), bpp="b", dialect="A")
    doc = item_doc(item, meta, [], status="AVAILABLE", status_at=None)
    [cat] = assemble_catalogs([Hit(item=doc, catalog=meta)], dialect="A", now=NOW, settings=SETTINGS)
    assert cat["beckn:items"][0]["beckn:itemAttributes"]["ev:availability"] == "UNKNOWN"


def test_empty_hits():
    for dialect in ("A", "B"):
        assert assemble_catalogs([], dialect=dialect, now=NOW, settings=SETTINGS) == []
        body = build_on_discover(ctx(dialect), [], settings=SETTINGS, now=NOW)
        validate_on_discover(body, dialect)
        assert body["message"] == {"catalogs": []}


# --- the answer cache and spliced catalogs -------------------------------------------------------------------

def _as_indexed(hits: list[Hit]) -> list[Hit]:
    """Copies of the hits with their JSON packed, as the embedded index stores it (the answer cache keeps only
    what it derives from packed bytes); offers shared between items stay shared."""
    copies = copy.deepcopy(hits)            # one deepcopy: what the hits share, the copies share
    pack_documents([h.item for h in copies])
    return copies


def _wire(hits: list[Hit], dialect: str, now: float, cache: JsonCache | None = None) -> bytes:
    return orjson.dumps(assemble_catalogs(hits, dialect=dialect, now=now, settings=SETTINGS, splice=cache is not None,
                                          cache=cache))


def test_cached_and_spliced_answers_are_the_decoded_ones_byte_for_byte_at_every_instant():
    cat = ubc()
    items, offers = cat["beckn:items"], cat["beckn:offers"]
    meta = meta_for(cat, bpp="b", dialect="A")
    docs = [offer_doc(offers[0], valid_from=NOW - 100, valid_to=NOW + 100),      # live around NOW only
            offer_doc(offers[1], daily=(12 * 3600, 13 * 3600)),                # a lunch promo (exact liveness)
            offer_doc(offers[2], is_active=False)]
    shared = offer_doc({**offers[0], "beckn:id": "shared", "beckn:items": [i["beckn:id"] for i in items]})
    hits = [Hit(item=item_doc(item, meta, [d for d in docs if item["beckn:id"] in d.item_ids] + [shared],
                              status="Available", status_at=NOW), catalog=meta) for item in items]
    indexed = _as_indexed(hits)
    cache = JsonCache(1 << 20)
    instants = [NOW, NOW - 100, NOW + 100, NOW - 100.5, NOW + 100.5, NOW + 1800, NOW + SETTINGS.status_fresh_s + 1,
                NOW - 7200, NOW]
    for now in instants + instants:                     # the second round is served from the cache
        for dialect in ("A", "B"):
            assert _wire(indexed, dialect, now, cache) == _wire(hits, dialect, now), (now, dialect)
    assert cache.hits and len(cache)


def test_a_document_published_again_with_the_same_json_shows_its_own_offers():
    cat = ubc()
    meta = meta_for(cat, bpp="b", dialect="A")
    item, offer = cat["beckn:items"][0], cat["beckn:offers"][0]
    [before] = _as_indexed([Hit(item=item_doc(item, meta, [offer_doc(offer)]), catalog=meta)])
    cache = JsonCache(1 << 20)
    assert b'"beckn:offers":[{' in _wire([before], "A", NOW, cache)
    # the same item JSON (equal packed bytes), its offer now expired: nothing cached by the bytes may show the old one
    doc = before.item
    again = msgspec.structs.replace(doc, offers=[msgspec.structs.replace(doc.offers[0], valid_to=NOW - 1)])
    assert b'"beckn:offers":[]' in _wire([Hit(item=again, catalog=meta)], "A", NOW, cache)


def test_an_item_first_shown_with_a_stale_status_is_shown_as_published_at_an_earlier_instant():
    item = _with_status("Available")
    meta = meta_for(ubc(), bpp="b", dialect="A")
    [hit] = _as_indexed([Hit(item=item_doc(item, meta, [], status="Available", status_at=NOW), catalog=meta)])
    cache = JsonCache(1 << 20)
    assert b'"stationStatus":"Unknown"' in _wire([hit], "A", NOW + SETTINGS.status_fresh_s + 1, cache)
    assert b'"stationStatus":"Available"' in _wire([hit], "A", NOW, cache)


@pytest.mark.parametrize("dialect, extra", [
    ("A", {"beckn:items": []}),                         # a header naming the items' key
    ("B", {"offers": "none"}),
    ("B", {"beckn:note": "x"}),                         # a stored B catalog whose keys read as A
    ("B", {}),
])
def test_unusual_headers_assemble_the_same_spliced_or_decoded(dialect, extra):
    cat = ubc() if dialect == "A" else lts()
    meta = meta_for(cat, bpp="b", dialect=dialect)
    meta.header = orjson.dumps({**orjson.loads(meta.header), **extra})
    item = cat["beckn:items"][0] if dialect == "A" else cat["resources"][0]
    offers = [offer_doc(o) for o in (cat["beckn:offers"] if dialect == "A" else cat["offers"])]
    hits = [Hit(item=item_doc(item, meta, offers), catalog=meta)]
    assert _wire(_as_indexed(hits), dialect, NOW, JsonCache(1 << 20)) == _wire(hits, dialect, NOW)


# --- response bodies ----------------------------------------------------------------------------------------

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _ts(s: str) -> float:
    assert TS.match(s), s
    return datetime.fromisoformat(s).timestamp()


def test_on_discover_context_dialect_a():
    rc = ctx("A")
    body = build_on_discover(rc, [], settings=SETTINGS, now=NOW + 0.25)
    c = body["context"]
    for k in ("version", "domain", "bap_id", "bap_uri", "transaction_id", "message_id", "ttl", "schema_context"):
        assert c[k] == rc.raw[k], k
    assert c["action"] == "on_discover"
    assert (c["bpp_id"], c["bpp_uri"]) == (SETTINGS.subscriber_id, SETTINGS.subscriber_url)
    assert _ts(c["timestamp"]) == pytest.approx(NOW + 0.25, abs=0.001)


def test_on_discover_context_dialect_b():
    rc = ctx("B")
    body = build_on_discover(rc, [], settings=SETTINGS, now=NOW)
    c = body["context"]
    for k in ("version", "bapId", "bapUri", "transactionId", "messageId", "ttl"):
        assert c[k] == rc.raw[k], k
    assert (c["action"], c["bppId"], c["bppUri"]) == ("on_discover", SETTINGS.subscriber_id, SETTINGS.subscriber_url)
    assert not [k for k in c if "_" in k]
    assert _ts(c["timestamp"]) == pytest.approx(NOW, abs=0.001)


RESULTS = [
    CatalogResult(catalog_id="catalog-ev-charging-001", status="ACCEPTED", item_count=3,
                  warnings=[{"code": "INVALID_LOCATION", "message": "bad point", "paths": "catalogs[0].beckn:items[1]"}]),
    CatalogResult(catalog_id="catalog-ev-charging-002", status="REJECTED",
                  error={"code": "SCH_REQUIRED_FIELD_MISSING", "message": "item has no id", "paths": "catalogs[1].beckn:items[3]"}),
]


def test_on_catalog_publish_dialect_a():
    rc = Context(dialect="A", action="catalog_publish", version="2.0.0", domain="beckn.one:deg:ev-charging",
                 bpp_id="example-bpp.com", bpp_uri="https://example-bpp.com/pilot", transaction_id="tx-1",
                 message_id="msg-1", ttl="PT30S")
    body = build_on_catalog_publish(rc, RESULTS, settings=SETTINGS, now=NOW)
    validate_on_catalog_publish(body, "A")
    c = body["context"]
    assert (c["action"], c["transaction_id"], c["message_id"]) == ("on_catalog_publish", "tx-1", "msg-1")
    assert c["bpp_id"] == SETTINGS.subscriber_id
    ok, bad = body["message"]["results"]
    assert ok == {"catalog_id": "catalog-ev-charging-001", "status": "ACCEPTED", "item_count": 3,
                  "warnings": RESULTS[0].warnings}
    assert bad == {"catalog_id": "catalog-ev-charging-002", "status": "REJECTED", "error": RESULTS[1].error}


def test_on_catalog_publish_dialect_b():
    rc = Context(dialect="B", action="catalog/publish", version="2.0.0", bpp_id="bpp.ecopower.example.com",
                 bpp_uri="https://bpp.ecopower.example.com/beckn", transaction_id="tx-2", message_id="msg-2")
    body = build_on_catalog_publish(rc, RESULTS, settings=SETTINGS, now=NOW)
    validate_on_catalog_publish(body, "B")
    c = body["context"]
    assert (c["action"], c["transactionId"], c["messageId"]) == ("catalog/on_publish", "tx-2", "msg-2")
    assert c["bppId"] == "bpp.ecopower.example.com"
    ok, bad = body["message"]["results"]
    assert (ok["catalogId"], ok["status"], ok["stats"]) == ("catalog-ev-charging-001", "ACCEPTED", {"itemCount": 3})
    assert "errors" not in ok
    assert (bad["catalogId"], bad["status"]) == ("catalog-ev-charging-002", "REJECTED")
    assert bad["errors"][0]["errorCode"] == "SCH_REQUIRED_FIELD_MISSING"
    assert bad["errors"][0]["errorMessage"] == "item has no id"


# --- robustness: arbitrary catalogs never crash the pipeline -------------------------------------------------

from hypothesis import HealthCheck, given, settings as hsettings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cds.core.errors import BecknError  # noqa: E402
from cds.core.normalize import normalize_catalog  # noqa: E402

_KEYS = ["beckn:id", "id", "beckn:items", "resources", "beckn:offers", "offers", "beckn:itemAttributes",
         "resourceAttributes", "beckn:descriptor", "descriptor", "schema:name", "name", "beckn:provider", "provider",
         "geo", "type", "coordinates", "chargingStation", "serviceLocation", "beckn:availableAt", "availableAt",
         "beckn:availabilityWindow", "schema:startTime", "schema:endTime", "startDate", "endDate", "beckn:validity",
         "validity", "beckn:price", "price", "value", "considerations", "beckn:items", "resourceIds", "maxPowerKW",
         "connectorType", "vehicleType", "stationStatus", "beckn:isActive", "isActive", "@context", "@type",
         "providers", "items", "refLocation", "locations", "applicableQuantity", "acceptedPaymentMethod"]
_SCALARS = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
            | st.sampled_from(["Point", "CCS2", "06:00:00", "2026-01-04T08:00:00Z", "x", "", "i1", "i2"])
            | st.text(max_size=12))
_JSON = st.recursive(_SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(_KEYS), c, max_size=6),
                     max_leaves=25)


_OBJ = st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=8)
_ITEM = st.builds(lambda i, rest: {**rest, "beckn:id": i}, st.sampled_from(["i1", "i2", "i3"]), _OBJ)
_OFFER = st.builds(lambda i, refs, rest: {**rest, "beckn:id": i, "beckn:items": refs},
                   st.sampled_from(["o1", "o2"]), st.lists(st.sampled_from(["i1", "i2", "i9"]), max_size=3), _OBJ)
_CATALOG = st.builds(lambda items, offers, rest: {**rest, "beckn:id": "c", "beckn:items": items, "beckn:offers": offers},
                     st.lists(_ITEM, max_size=4), st.lists(_OFFER, max_size=3), _OBJ)


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalog=st.one_of(_JSON, _CATALOG), dialect=st.sampled_from(["A", "B"]))
def test_arbitrary_catalogs_normalise_or_reject_and_assemble(catalog, dialect):
    try:
        rec, warnings = normalize_catalog(catalog, publisher_id="bpp", publisher_uri=None, dialect=dialect,
                                          settings=SETTINGS, now=NOW, fallback_id="fb")
    except BecknError as e:
        assert e.status == 400 and e.code.startswith("SCH_")
        return
    assert all({"code", "message", "paths"} <= set(w) for w in warnings)
    hits = [Hit(item=it, catalog=rec.meta) for it in rec.items]
    for to in ("A", "B"):
        out = assemble_catalogs(hits, dialect=to, now=NOW, settings=SETTINGS)
        orjson.dumps(build_on_discover(ctx(to), out, settings=SETTINGS, now=NOW))


@pytest.mark.parametrize("dialect", ["A", "B"])
@pytest.mark.parametrize("age", [0, SETTINGS.status_fresh_s + 1])
def test_spliced_stored_json_serialises_exactly_as_the_decoded_answer(dialect, age):
    """splice=True (what discover sends) puts stored bytes in as orjson.Fragment where no conversion or
    status rewrite is needed; the serialised reply is byte for byte that of decoding everything."""
    hits = ubc_hits(status="Available", status_at=NOW - age)
    plain = assemble_catalogs(hits, dialect=dialect, now=NOW, settings=SETTINGS)
    spliced = assemble_catalogs(hits, dialect=dialect, now=NOW, settings=SETTINGS, splice=True)
    assert orjson.dumps(spliced) == orjson.dumps(plain)
    fragments = [x for c in spliced for x in c.get("beckn:items", []) + c.get("beckn:offers", [])
                 if isinstance(x, orjson.Fragment)]
    assert bool(fragments) == (dialect == "A")      # stored in A: spliced (offers at least); B: converted
