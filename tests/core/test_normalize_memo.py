"""Normalising reads each distinct period and list of strings once per catalog, keyed by the value as published
(docs/decisions.md §P). An item's document must not depend on which other items share its catalog: keys that
compare equal (1 == 1.0 == True, "x" as a string or as ["x"]) must have equal results, and values that cannot be
keys (lists, objects) must still be read."""

from __future__ import annotations

import msgspec
import pytest

from cds.core.fields import pick, read, spelled
from tests.core.test_normalize import a_catalog, a_item, a_offer, norm

WINDOWS = [
    {"schema:startTime": "08:00", "schema:endTime": "20:00"},
    {"schema:startTime": "08:00", "schema:endTime": "20:00", "x": [1]},          # unhashable: read on its own
    {"beckn:startTime": 1, "schema:startTime": "08:00", "schema:endTime": "20:00"},  # 1 hides the string
    {"beckn:startTime": True, "schema:startTime": "08:00", "schema:endTime": "20:00"},
    {"beckn:startTime": 1.0, "schema:startTime": "08:00", "schema:endTime": "20:00"},
    {"schema:startDate": "2026-01-01", "schema:endDate": "2026-02-01"},
    {"schema:startDate": "2026-01-01", "schema:endDate": "2026-02-01", "@type": "beckn:TimePeriod"},
]
LISTS = ["4-WHEELER", ["4-WHEELER"], ["4-wheeler", 1], ["4-wheeler", True], [{"a": 1}, "2-WHEELER"],
         "2-wheeler, 4-wheeler", ["4w"], "4w", []]


def _items() -> list[dict]:
    out = []
    for k, w in enumerate(WINDOWS):
        out.append(a_item(f"w{k}", _item={"beckn:availabilityWindow": [w]}))
    for k, v in enumerate(LISTS):      # the same value as vehicle types (canonicalised) and as amenities (upper-cased)
        out += [a_item(f"v{k}", vehicleType=v), a_item(f"a{k}", amenityFeature=v)]
    return out


def _docs(items: list[dict], offers: list[dict] | None = None) -> dict[str, bytes]:
    rec, warnings = norm(a_catalog(items, offers))
    return {d.item_id: msgspec.msgpack.encode(d) for d in rec.items}


def test_items_normalise_alike_alone_and_together():
    together = _docs(_items())
    for item in _items():
        assert _docs([item]) == {item["beckn:id"]: together[item["beckn:id"]]}, item["beckn:id"]


def test_equal_periods_read_alike():
    rec, _ = norm(a_catalog(_items()))
    got = {d.item_id: (d.windows, d.daily_windows) for d in rec.items}
    assert got["w0"] == got["w1"] and got["w0"][1]                    # a daily window, with or without a list
    assert got["w2"] == got["w3"] == got["w4"] == ([], [])            # a non-string startTime: window ignored
    assert got["w5"] == got["w6"] and got["w5"][0]


def test_offers_normalise_alike_alone_and_together():
    items = [a_item("i1")]
    offers = [a_offer(f"o{k}", ["i1"], **{"beckn:validity": w, "beckn:acceptedPaymentMethod": v})
              for k, (w, v) in enumerate(zip(WINDOWS, LISTS))]
    rec, _ = norm(a_catalog(items, offers))
    together = {o.id: msgspec.msgpack.encode(o) for o in rec.items[0].offers}
    for o in offers:
        alone, _ = norm(a_catalog(items, [o]))
        assert msgspec.msgpack.encode(alone.items[0].offers[0]) == together[o["beckn:id"]], o["beckn:id"]


@pytest.mark.parametrize("obj", [
    {}, {"id": "p"}, {"schema:id": "s", "id": "p"}, {"beckn:id": "b", "schema:id": "s", "id": "p"},
    {"beckn:id": None, "schema:id": None, "id": "p"}, {"beckn:id": None}, {"beckn:id": 0, "id": "p"},
    {"beckn:id": "", "id": "p"},
])
def test_read_is_pick(obj):
    assert read(obj, spelled("id")) == pick(obj, "id")
    assert spelled("id") == ("beckn:id", "schema:id", "id")
