"""Published content bounds end to end (docs/decisions.md §27): a signed publish whose catalog holds a 10 MB item
name, a 70 KB item and a latitude of 95 is ACKed; the on_catalog_publish callback says PARTIAL and names each
rejected item with its reason; a discover then answers with the rest only, in a small answer."""

from __future__ import annotations

import copy

import orjson

from tests.api.test_api_protocol import publish_body
from tests.harness import fresh_context, load_fixture

AROUND_BENGALURU = {"spatial": [{"op": "s_dwithin", "targets": "$['beckn:availableAt'][*]['geo']",
                                 "geometry": {"type": "Point", "coordinates": [77.61, 12.95]},
                                 "distanceMeters": 50000}]}


def over_bound_publish(network) -> tuple[bytes, list[str]]:
    doc = orjson.loads(publish_body(network))
    cat = doc["message"]["catalogs"][0]
    items = cat["beckn:items"]
    ok_id = items[2]["beckn:id"]
    items[0]["beckn:descriptor"]["schema:name"] = "N" * (10 << 20)                           # 10 MB name
    items[1]["beckn:itemAttributes"]["chargingStation"]["serviceLocation"]["geo"]["coordinates"][1] = 95.0
    heavy = copy.deepcopy(items[2])
    heavy["beckn:id"] = "heavy-70kb"
    heavy["beckn:descriptor"]["schema:keywords"] = ["word" * 200] * 88         # ~70 KB of 800-byte strings
    items.append(heavy)
    return orjson.dumps(doc), [items[0]["beckn:id"], items[1]["beckn:id"], "heavy-70kb", ok_id]


async def test_over_bound_items_are_rejected_with_reasons_and_the_rest_is_served(cds, network):
    body, (big, far, heavy, ok) = over_bound_publish(network)
    resp = await cds.post("/beckn/catalog/publish", data=body, headers=network.bpp.sign(body))
    assert resp.status == 200, await resp.text()
    (_path, _h, cb), = await network.bpp_sink.wait_for(1)
    (result,) = orjson.loads(cb)["message"]["results"]
    assert result["status"] == "PARTIAL" and result["item_count"] == 1, result
    rejected = {w["paths"]: w["message"] for w in result["warnings"] if w["code"] == "INVALID_ITEM"}
    assert set(rejected) == {f"catalogs[0].beckn:items[{k}]" for k in (0, 1, 3)}, result
    by_item = {next(i for i in (big, far, heavy) if repr(i) in m): m for m in rejected.values()}
    assert "8192" in by_item[big] and "schema:name" in by_item[big]
    assert "WGS84" in by_item[far]
    assert "65536" in by_item[heavy]

    doc = fresh_context(load_fixture("UBC_discovery-within-a-circular-boundary.json"),
                        bap_id=network.bap.subscriber_id, bap_uri=network.bap.url)
    doc["message"] = AROUND_BENGALURU
    discover = orjson.dumps(doc)
    resp = await cds.request("GET", "/beckn/discover", data=discover, headers=network.bap.sign(discover))
    answer = await resp.read()
    assert resp.status == 200 and len(answer) < 64 << 10, len(answer)
    served = [i["beckn:id"] for c in orjson.loads(answer)["message"]["catalogs"] for i in c["beckn:items"]]
    assert served == [ok]
