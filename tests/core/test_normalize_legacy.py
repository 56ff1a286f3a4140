"""cds.core.normalize, legacy `providers[].items[]` catalogs: what an item's place says is stored explicitly
(docs/decisions.md §W, "Legacy shape"), so that their answers validate in either dialect."""

from __future__ import annotations

import copy

import orjson

from cds.core.dialects import catalog_to_a
from tests.core.test_dialects import body
from tests.core.test_normalize import catalogs_of, load, norm
from tests.schemas import validate_on_discover

PROVIDER = {"id": "PROV-1", "descriptor": {"name": "Provider One"},
            "locations": [{"id": "LOC-1", "geo": {"type": "Point", "coordinates": [77.61, 12.91]}}]}


def item(iid: str, **extra) -> dict:
    return {"id": iid, "descriptor": {"name": iid}, "availableAt": [{"refLocation": "LOC-1"}],
            "itemAttributes": {"@context": "https://x/charging_service/v1/context.jsonld", "@type": "ChargingService",
                               "connectorType": "CCS2", "maxPowerKW": 60}, **extra}


def offer(oid: str, **extra) -> dict:
    return {"id": oid, "descriptor": {"name": oid}, "price": {"currency": "INR", "value": 18.0}, **extra}


def legacy(*items: dict, provider: dict | None = None) -> dict:
    return {"id": "legacy-cat", "descriptor": {"name": "Legacy"}, "providers": [{**(provider or PROVIDER),
                                                                                 "items": list(items)}]}


# The enclosing provider (PROVIDER) as an LTS item or offer states it
PROVIDER_LTS = {"id": "PROV-1", "descriptor": {"name": "Provider One"},
                "availableAt": [{"geo": {"type": "Point", "coordinates": [77.61, 12.91]}}]}


def stored(cat: dict) -> tuple[dict[str, dict], dict[str, dict]]:
    """(items, offers) by id, as stored."""
    rec, _ = norm(cat)
    return ({d.item_id: orjson.loads(d.raw) for d in rec.items},
            {o.id: orjson.loads(o.raw) for d in rec.items for o in d.offers})


def test_a_legacy_item_is_stored_with_its_enclosing_provider_in_the_lts_shape():
    own = item("own", provider={"id": "OTHER", "descriptor": {"name": "Other"}})
    cat = legacy(item("i1"), item("i2"), own)
    published = copy.deepcopy(cat)
    rec, _ = norm(cat)
    items = {d.item_id: orjson.loads(d.raw) for d in rec.items}
    assert items.pop("own") == own                                     # an item naming its provider: as published
    for iid, it in items.items():
        p = it.pop("provider")
        assert p == PROVIDER_LTS
        assert it == item(iid)                                         # nothing else added or changed
    assert cat == published                                            # the caller's catalog is not changed
    assert orjson.loads(rec.meta.raw) == published                     # kept as published (MERGE reads it)
    assert [d.provider_id for d in rec.items] == ["PROV-1", "PROV-1", "OTHER"]


def test_a_nested_offer_names_its_item_first_and_the_enclosing_provider():
    cat = legacy(item("i1", offers=[offer("o1"), offer("o2", items=["i2"]),
                                    offer("o3", resourceIds=["i1"], provider={"id": "X", "descriptor": {}})]),
                 item("i2"))
    _, offers = stored(cat)
    assert offers["o1"] == {**offer("o1"), "resourceIds": ["i1"], "provider": PROVIDER_LTS}
    assert offers["o2"] == {**offer("o2"), "items": ["i1", "i2"], "provider": PROVIDER_LTS}  # in the key it used
    assert offers["o3"] == offer("o3", resourceIds=["i1"], provider={"id": "X", "descriptor": {}})


def test_prefixed_legacy_items_and_offers_get_the_dialect_a_shapes():
    it = {"@type": "beckn:Item", "beckn:id": "i1", "beckn:descriptor": {"schema:name": "i1"},
          "beckn:itemAttributes": {"connectorType": "CCS2"},
          "offers": [{"@type": "beckn:Offer", "beckn:id": "o1", "beckn:descriptor": {"schema:name": "o1"}}]}
    items, offers = stored(legacy(it))
    assert items["i1"]["beckn:provider"] == {
        "beckn:id": "PROV-1", "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": "Provider One"},
        "beckn:locations": [{"geo": {"type": "Point", "coordinates": [77.61, 12.91]}}]}
    assert (offers["o1"]["beckn:items"], offers["o1"]["beckn:provider"]) == (["i1"], "PROV-1")


def test_the_abhimail_catalog_answers_in_dialect_a_from_stored_json():
    """What an answer splices: the stored header, items and offers, converted to dialect A."""
    cat = catalogs_of(load("ABHIMAIL_charging_service_v1_on_discover.json"))[0]
    rec, _ = norm(cat, fallback_id="abh")
    header = orjson.loads(rec.meta.header)
    header["resources"] = [orjson.loads(d.raw) for d in rec.items]
    header["offers"] = [orjson.loads(o.raw) for d in rec.items for o in d.offers]
    a = catalog_to_a({**header, "id": "abh", "bppId": "bpp.example.com", "bppUri": "https://bpp.example.com"})
    validate_on_discover(body([a], "A"), "A")
    [it], [o] = a["beckn:items"], a["beckn:offers"]
    assert it["beckn:provider"]["beckn:id"] == "PROV-ECOPWR"
    assert (o["beckn:items"], o["beckn:provider"]) == ([it["beckn:id"]], "PROV-ECOPWR")
