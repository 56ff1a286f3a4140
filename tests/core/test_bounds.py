"""Published content bounds (docs/decisions.md §27) in normalisation: an item or offer over a bound is left out
with an INVALID_ITEM / INVALID_OFFER notice naming the reason, the rest of the catalog is indexed, nothing over a
bound is stored (not even in the raw catalog kept for MERGE); a catalog header over a bound rejects the catalog."""

from __future__ import annotations

import msgspec
import pytest

from cds.core import normalize_read as N
from cds.core.bounds import long_string
from cds.core.errors import BecknError
from cds.core.replies import build_on_catalog_publish
from cds.core.models import CatalogResult, Context
from tests.core.test_normalize import SETTINGS, a_item, norm

MB = 1 << 20


def catalog(items: list, offers: list | None = None, **header) -> dict:
    return {"@type": "beckn:Catalog", "beckn:id": "cat-1", "beckn:descriptor": {"schema:name": "Test"},
            "beckn:items": items, **({"beckn:offers": offers} if offers is not None else {}), **header}


def offer(offer_id: str, *item_ids: str, **extra) -> dict:
    return {"beckn:id": offer_id, "beckn:items": list(item_ids), "beckn:price": {"value": 18, "currency": "INR"},
            **extra}


def at(lon: float, lat: float) -> dict:
    return {"chargingStation": {"id": "s", "serviceLocation": {"geo": {"type": "Point", "coordinates": [lon, lat]}}}}


def notices(warnings: list, code: str) -> list[dict]:
    return [w for w in warnings if w["code"] == code]


def test_an_item_with_a_10_mb_name_is_rejected_and_the_rest_indexed():
    big = a_item("big")
    big["beckn:descriptor"]["schema:name"] = "x" * (10 * MB)
    rec, warnings = norm(catalog([a_item("ok-1"), big, a_item("ok-2")]))
    assert [d.item_id for d in rec.items] == ["ok-1", "ok-2"]
    (n,) = notices(warnings, "INVALID_ITEM")
    assert n["paths"] == "catalogs[0].beckn:items[1]"
    assert "'big'" in n["message"] and "beckn:descriptor.schema:name" in n["message"]
    assert str(10 * MB) in n["message"] and "8192" in n["message"] and "CDS_MAX_ITEM_STRING_BYTES" in n["message"]
    assert warnings[0] is n                                  # rejections are listed first
    assert len(rec.meta.raw) < 20_000 and b"ok-2" in rec.meta.raw and b"big" not in rec.meta.raw
    assert rec.meta.item_count == 2


def test_an_item_over_64_kib_of_short_strings_is_rejected():
    heavy = a_item("heavy", _item={"beckn:tags": ["t" * 1000] * 70})      # 70 KB, every string 1 KB
    rec, warnings = norm(catalog([heavy, a_item("ok")]))
    assert [d.item_id for d in rec.items] == ["ok"]
    (n,) = notices(warnings, "INVALID_ITEM")
    assert "65536" in n["message"] and "CDS_MAX_ITEM_BYTES" in n["message"]


def test_an_item_whose_offers_take_it_over_64_kib_is_rejected():
    items = [a_item("a"), a_item("b")]
    offers = [offer(f"o{k}", "a", note="n" * 7000) for k in range(10)] + [offer("ob", "b")]
    rec, warnings = norm(catalog(items, offers))
    assert [d.item_id for d in rec.items] == ["b"] and [o.id for o in rec.items[0].offers] == ["ob"]
    (n,) = notices(warnings, "INVALID_ITEM")
    assert "'a'" in n["message"] and "10 offer(s)" in n["message"]


@pytest.mark.parametrize("lon,lat", [(77.5, 95.0), (77.5, -90.5), (180.5, 12.0), (-181.0, 12.0)])
def test_coordinates_outside_wgs84_reject_the_item(lon, lat):
    rec, warnings = norm(catalog([a_item("far", **at(lon, lat)), a_item("ok", **at(77.5, 12.9))]))
    assert [d.item_id for d in rec.items] == ["ok"]
    (n,) = notices(warnings, "INVALID_ITEM")
    assert "WGS84" in n["message"] and "chargingStation.serviceLocation" in n["message"]


def test_out_of_range_coordinates_anywhere_in_the_item_reject_it():
    item = a_item("x", **at(77.5, 12.9), _item={"beckn:availableAt": [{"geo": {"type": "Point",
                                                                                "coordinates": [77.5, 95]}}]})
    rec, warnings = norm(catalog([item]))
    assert rec.items == [] and "availableAt[0]" in notices(warnings, "INVALID_ITEM")[0]["message"]


def test_an_offer_with_an_over_long_string_is_rejected_and_its_item_kept():
    items = [a_item("a")]
    rec, warnings = norm(catalog(items, [offer("long", "a", terms="t" * 9000), offer("fine", "a")]))
    assert [o.id for o in rec.items[0].offers] == ["fine"]
    (n,) = notices(warnings, "INVALID_OFFER")
    assert n["paths"] == "catalogs[0].beckn:offers[0]" and "'long'" in n["message"]
    assert b"t" * 9000 not in rec.meta.raw


def test_an_offer_for_a_rejected_item_is_not_reported_as_unknown():
    big = a_item("big", _item={"blob": "b" * 9000})
    _rec, warnings = norm(catalog([big, a_item("ok")], [offer("o1", "big")]))
    assert [w["code"] for w in warnings] == ["INVALID_ITEM"]


def test_an_over_long_key_rejects_the_item():
    rec, warnings = norm(catalog([a_item("k", _item={"k" * 9000: 1}), a_item("ok")]))
    assert [d.item_id for d in rec.items] == ["ok"] and "key" in notices(warnings, "INVALID_ITEM")[0]["message"]


def test_multibyte_strings_are_measured_in_bytes():
    rec, _ = norm(catalog([a_item("u", _item={"note": "é" * 4000}), a_item("v", _item={"note": "é" * 4100})]))
    assert [d.item_id for d in rec.items] == ["u"]                 # 8000 bytes fit, 8200 do not


def test_a_catalog_header_over_a_bound_rejects_the_catalog():
    with pytest.raises(BecknError) as err:
        norm(catalog([a_item("ok")], **{"beckn:descriptor": {"schema:name": "n" * 9000}}))
    assert err.value.code == "SCH_SCHEMA_VALIDATION_FAILED" and "catalog header" in err.value.message
    assert err.value.paths == "catalogs[0]"


def test_the_limits_are_configurable():
    small = msgspec.structs.replace(SETTINGS, max_item_string_bytes=100, max_item_bytes=4000)
    rec, warnings = norm(catalog([a_item("a", _item={"note": "n" * 101}), a_item("b")]), settings=small)
    assert [d.item_id for d in rec.items] == ["b"] and "100" in warnings[0]["message"]


def test_rejections_stay_visible_when_warnings_are_capped():
    bad_loc = {"geo": {"type": "Point", "coordinates": ["x", "y"]}}
    items = [a_item(f"w{k}", serviceLocation=bad_loc) for k in range(N.MAX_WARNINGS + 5)]
    items.append(a_item("big", _item={"blob": "b" * 9000}))
    rec, warnings = norm(catalog(items))
    assert len(rec.items) == N.MAX_WARNINGS + 5
    assert warnings[0]["code"] == "INVALID_ITEM" and warnings[-1]["code"] == "WARNINGS_TRUNCATED"
    assert len(warnings) == N.MAX_WARNINGS + 1


def test_deep_nesting_is_walked_without_recursion():
    deep: object = "d" * 9000
    for _ in range(5000):
        deep = [deep]
    assert long_string(deep, 8192) == ("[0]" * 5000, 9000)


def test_partial_results_in_both_dialects():
    result = CatalogResult(catalog_id="c", status="PARTIAL", item_count=2, warnings=[
        {"code": "INVALID_ITEM", "message": "item 'big': too big", "paths": "catalogs[0].resources[1]"},
        {"code": "INVALID_LOCATION", "message": "no location", "paths": "catalogs[0].resources[2]"}])
    a = build_on_catalog_publish(Context(action="catalog_publish", dialect="A"), [result], settings=SETTINGS, now=0)
    (ra,) = a["message"]["results"]
    assert ra["status"] == "PARTIAL" and ra["item_count"] == 2
    assert [w["code"] for w in ra["warnings"]] == ["INVALID_ITEM", "INVALID_LOCATION"]
    b = build_on_catalog_publish(Context(action="catalog/publish", dialect="B"), [result], settings=SETTINGS, now=0)
    (rb,) = b["message"]["results"]
    assert rb["status"] == "PARTIAL" and rb["stats"] == {"itemCount": 2}
    assert rb["errors"] == [{"errorCode": "INVALID_ITEM", "errorMessage": "item 'big': too big",
                             "paths": "catalogs[0].resources[1]"}]
    assert [w["code"] for w in rb["warnings"]] == ["INVALID_LOCATION"]
