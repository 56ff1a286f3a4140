"""cds.core.dialects: catalog conversion between dialect A (rc, `beckn:`) and B (LTS), checked against both OpenAPIs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cds.core import dialects as D
from tests.schemas import errors as schema_errors
from tests.schemas import validate_on_discover

FIX = Path(__file__).resolve().parents[1] / "fixtures"
A_FILES = ["UBC_on_discover_ev-charging-on_discover.json", "UBC_on_discover_specific-item-catalog.json",
           "UBC_catalog_publish_ev-charging-catalog-publish.json", "DEG_on_discover_ev-charging-discovery-catalog.json",
           "DEG_on_discover_ev-charging-specific-evse-catalog.json"]
B_FILES = ["spec/examples/lts-constructed/on_discover.json", "spec/examples/lts-constructed/publish.json"]


def catalogs(name: str) -> list[dict]:
    doc = json.loads((FIX / name).read_text(encoding="utf-8"))
    return doc["message"]["catalogs"]


def body(cats: list[dict], dialect: str) -> dict:
    if dialect == "A":
        ctx = {"version": "2.0.0", "action": "on_discover", "bap_id": "bap.example.com",
               "bap_uri": "https://bap.example.com", "transaction_id": "t", "message_id": "m",
               "timestamp": "2026-01-04T07:31:02.000Z"}
    else:
        ctx = {"version": "2.0.0", "action": "on_discover", "bapId": "bap.example.com",
               "bapUri": "https://bap.example.com", "transactionId": "t", "messageId": "m",
               "timestamp": "2026-01-04T07:31:02.000Z"}
    return {"context": ctx, "message": {"catalogs": cats}}


@pytest.mark.parametrize("name", A_FILES)
def test_a_catalogs_convert_to_valid_lts(name):
    cats = catalogs(name)
    assert schema_errors(body(cats, "B"), "on_discover", "B"), "precondition: dialect-A catalogs are not LTS-valid"
    converted = [D.convert_catalog(c, "B") for c in cats]
    validate_on_discover(body(converted, "B"), "B")


@pytest.mark.parametrize("name", B_FILES)
def test_b_catalogs_convert_to_valid_rc(name):
    # the assembler sets the origin BPP on every catalog it sends (rc requires beckn:bppId/bppUri)
    cats = [{"bppId": "bpp.example.com", "bppUri": "https://bpp.example.com/beckn", **c} for c in catalogs(name)]
    assert schema_errors(body(cats, "A"), "on_discover", "A"), "precondition: LTS catalogs are not rc-valid"
    converted = [D.convert_catalog(c, "A") for c in cats]
    validate_on_discover(body(converted, "A"), "A")


@pytest.mark.parametrize("name, dialect", [(n, "A") for n in A_FILES] + [(n, "B") for n in B_FILES])
def test_same_dialect_passes_through_unchanged(name, dialect):
    for cat in catalogs(name):
        before = copy.deepcopy(cat)
        assert D.convert_catalog(cat, dialect) is cat
        assert cat == before
        other = D.convert_catalog(cat, "B" if dialect == "A" else "A")
        assert cat == before, "conversion must not mutate its input"
        assert D.catalog_dialect(other) != dialect


def test_a_to_b_keeps_the_data():
    a = catalogs("UBC_on_discover_specific-item-catalog.json")[0]
    b = D.convert_catalog(a, "B")
    assert b["id"] == a["beckn:id"]
    assert b["descriptor"]["name"] == a["beckn:descriptor"]["schema:name"]
    assert (b["bppId"], b["bppUri"]) == (a["beckn:bppId"], a["beckn:bppUri"])
    item, res = a["beckn:items"][0], b["resources"][0]
    assert res["id"] == item["beckn:id"]
    assert res["resourceAttributes"] == item["beckn:itemAttributes"]  # the attribute pack is untouched
    assert res["descriptor"]["longDesc"] == item["beckn:descriptor"]["beckn:longDesc"]
    assert res["provider"]["id"] == item["beckn:provider"]["beckn:id"]
    assert res["availabilityWindow"] == [{"startTime": w["schema:startTime"], "endTime": w["schema:endTime"]}
                                         for w in item["beckn:availabilityWindow"]]
    assert res["rating"]["ratingValue"] == item["beckn:rating"]["beckn:ratingValue"]
    # the only provider of the items becomes the catalog provider the LTS requires
    assert b["provider"]["id"] == item["beckn:provider"]["beckn:id"]
    for off_a, off_b in zip(a["beckn:offers"], b["offers"]):
        assert off_b["id"] == off_a["beckn:id"]
        assert off_b["resourceIds"] == off_a["beckn:items"]
        assert off_b["provider"]["id"] == off_a["beckn:provider"]
        assert off_b["price"] == off_a["beckn:price"]
        [cons] = off_b["considerations"]
        assert cons["considerationAttributes"]["price"] == off_a["beckn:price"]["value"]
        assert cons["considerationAttributes"]["priceCurrency"] == off_a["beckn:price"]["currency"]
        assert off_b["validity"] == {"startDate": off_a["beckn:validity"]["schema:startDate"],
                                     "endDate": off_a["beckn:validity"]["schema:endDate"]}
        assert off_b["offerAttributes"] == off_a["beckn:offerAttributes"]


def test_offer_provider_object_taken_from_the_item_provider():
    a = catalogs("UBC_catalog_publish_ev-charging-catalog-publish.json")[0]
    b = D.convert_catalog(a, "B")
    item_providers = {it["beckn:provider"]["beckn:id"]: it["beckn:provider"] for it in a["beckn:items"]}
    for off in b["offers"]:
        src = item_providers[off["provider"]["id"]]
        assert off["provider"]["descriptor"]["name"] == src["beckn:descriptor"]["schema:name"]


def test_lts_catalog_provider_when_items_have_different_providers():
    a = catalogs("UBC_catalog_publish_ev-charging-catalog-publish.json")[0]
    assert len({it["beckn:provider"]["beckn:id"] for it in a["beckn:items"]}) > 1
    b = D.convert_catalog(a, "B")
    assert b["provider"] == {"id": a["beckn:bppId"], "descriptor": {"name": a["beckn:descriptor"]["schema:name"]}}
    declared = {**a, "beckn:providerId": a["beckn:items"][1]["beckn:provider"]["beckn:id"]}
    b2 = D.convert_catalog(declared, "B")
    assert b2["provider"]["id"] == declared["beckn:providerId"]
    assert b2["provider"]["descriptor"]["name"] == a["beckn:items"][1]["beckn:provider"]["beckn:descriptor"]["schema:name"]


def test_b_to_a_fills_required_keys_and_keeps_the_data():
    b = catalogs("spec/examples/lts-constructed/on_discover.json")[0]
    a = D.convert_catalog(b, "A")
    assert (a["@context"], a["@type"]) == (D.CORE_CONTEXT, "beckn:Catalog")
    assert a["beckn:id"] == b["id"] and a["beckn:providerId"] == b["provider"]["id"]
    item, res = a["beckn:items"][0], b["resources"][0]
    assert (item["@context"], item["@type"], item["beckn:descriptor"]["@type"]) == (D.CORE_CONTEXT, "beckn:Item", "beckn:Descriptor")
    assert item["beckn:itemAttributes"] == res["resourceAttributes"]
    assert item["beckn:provider"]["beckn:id"] == b["provider"]["id"]  # the resource has none: catalog's provider
    assert item["beckn:availableAt"] == res["availableAt"]
    off, src = a["beckn:offers"][0], b["offers"][0]
    assert off["beckn:items"] == src["resourceIds"] and off["beckn:provider"] == b["provider"]["id"]
    spec = src["considerations"][0]["considerationAttributes"]
    assert off["beckn:price"]["value"] == spec["price"] and off["beckn:price"]["currency"] == spec["priceCurrency"]
    assert off["beckn:validity"]["schema:endDate"] == src["validity"]["endDate"]
    assert off["beckn:validity"]["@type"] == "beckn:TimePeriod"


def test_round_trips_keep_what_both_dialects_can_say():
    for name in A_FILES:
        for a in catalogs(name):
            back = D.convert_catalog(D.convert_catalog(a, "B"), "A")
            assert [i["beckn:id"] for i in back["beckn:items"]] == [i["beckn:id"] for i in a["beckn:items"]]
            for x, y in zip(back["beckn:items"], a["beckn:items"]):
                for k in ("beckn:descriptor", "beckn:itemAttributes", "beckn:availabilityWindow", "beckn:rating",
                          "beckn:category", "beckn:isActive", "beckn:provider"):
                    assert x[k] == y[k], k
            for x, y in zip(back["beckn:offers"], a["beckn:offers"]):
                for k in ("beckn:id", "beckn:items", "beckn:price", "beckn:validity", "beckn:provider",
                          "beckn:acceptedPaymentMethod", "beckn:offerAttributes"):
                    assert x[k] == y[k], k
    for name in B_FILES:
        for b in catalogs(name):
            back = D.convert_catalog(D.convert_catalog(b, "A"), "B")
            assert [r["id"] for r in back["resources"]] == [r["id"] for r in b["resources"]]
            assert [o["resourceIds"] for o in back["offers"]] == [o["resourceIds"] for o in b["offers"]]
            assert back["descriptor"] == b["descriptor"] and back["validity"] == b["validity"]


def test_b_extras_mapped_or_dropped_never_injected_into_closed_a_objects():
    res = {"id": "r1", "descriptor": {"name": "R", "images": ["https://img/x.png"]}, "price": {"value": 5},
           "category": "DC_FAST", "networkId": "net/ev", "unknownKey": 1, "rating": {"ratingValue": 9},
           "resourceAttributes": {"@context": "https://x/EvChargingService/v1/context.jsonld", "@type": "ChargingService"}}
    off = {"id": "o1", "resourceIds": ["r1"], "provider": "cpo", "acceptedPaymentMethod": ["UPI", "Card"],
           "addOns": [{"id": "extra"}], "unknownKey": 2}
    cat = {"id": "c", "descriptor": {"name": "C"}, "provider": {"id": "cpo", "descriptor": {}},
           "bppId": "bpp.example.com", "bppUri": "https://bpp.example.com", "resources": [res], "offers": [off]}
    a = D.convert_catalog(cat, "A")
    item, offer = a["beckn:items"][0], a["beckn:offers"][0]
    assert "unknownKey" not in item and "price" not in item and "unknownKey" not in offer
    assert item["beckn:category"] == {"@type": "schema:CategoryCode", "schema:codeValue": "DC_FAST"}
    assert item["beckn:networkId"] == ["net/ev"]
    assert "beckn:ratingValue" not in item["beckn:rating"]  # 9 is outside the rc range 0..5
    assert item["beckn:descriptor"]["schema:image"] == ["https://img/x.png"]
    assert offer["beckn:acceptedPaymentMethod"] == ["UPI"]  # "Card" is not in the rc enum
    assert offer["beckn:addOns"] == ["extra"]
    validate_on_discover(body([a], "A"), "A")


def test_a_extras_dropped_from_closed_lts_objects():
    a = copy.deepcopy(catalogs("UBC_on_discover_specific-item-catalog.json")[0])
    a["beckn:validity"] = {"@type": "beckn:TimePeriod", "schema:endDate": "2026-12-31T23:59:59Z"}
    a["beckn:descriptor"]["schema:image"] = ["https://img/a.png"]
    a["beckn:items"][0]["beckn:availableAt"] = [{"@type": "beckn:Location", "address": "MG Road",
                                                 "geo": {"type": "Point", "coordinates": [77.6, 12.9]}}]
    b = D.convert_catalog(a, "B")
    assert b["validity"] == {"endDate": "2026-12-31T23:59:59Z"}
    assert b["descriptor"]["thumbnailImage"] == "https://img/a.png"
    assert b["resources"][0]["availableAt"] == [{"geo": {"type": "Point", "coordinates": [77.6, 12.9]},
                                                 "address": {"streetAddress": "MG Road"}}]
    validate_on_discover(body([b], "B"), "B")


def test_resource_without_attributes_gets_a_minimal_valid_bag():
    b = catalogs("spec/examples/lts-constructed/publish.json")[0]
    assert "resourceAttributes" not in b["resources"][0]
    item = D.convert_catalog(b, "A")["beckn:items"][0]
    assert item["beckn:itemAttributes"] == {"@context": D.CORE_CONTEXT, "@type": "beckn:Attributes"}


def test_dialect_detection():
    assert D.catalog_dialect(catalogs(A_FILES[0])[0]) == "A"
    assert D.catalog_dialect(catalogs(B_FILES[0])[0]) == "B"
    assert D.catalog_dialect({}, default="B") == "B"
    assert D.catalog_dialect({"@type": "beckn:Catalog"}) == "A"


def test_deeply_nested_extras_do_not_exhaust_the_stack():
    deep: list = []
    node = deep
    for _ in range(900):
        node.append([])
        node = node[0]
    a = copy.deepcopy(catalogs(A_FILES[1])[0])
    a["beckn:items"][0]["beckn:networkId"] = deep  # any unknown-depth value on an open key
    b = D.convert_catalog(a, "B")
    assert b["resources"][0]["networkId"] is not None
