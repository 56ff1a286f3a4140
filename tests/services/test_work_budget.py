"""The work budget of a discover (docs/decisions.md §24, CDS_DISCOVER_WORK_MS) at the service's edges: a search
past it is a 400 naming the limit on the synchronous path, and, after the ACK of the asynchronous one, an
on_discover that carries the same error and no catalogs; a fan-out reply past it is refused with a 400."""

from __future__ import annotations

import orjson

from cds.api.app import create_app
from cds.api.appkeys import STORAGE
from cds.core import budget
from tests.harness import fresh_context, load_fixture, start_client

DISCOVER = "UBC_discovery-within-a-circular-boundary.json"


def discover_body(net, geometry: dict | None = None) -> bytes:
    doc = fresh_context(load_fixture(DISCOVER), bap_id=net.bap.subscriber_id, bap_uri=net.bap.url)
    if geometry is not None:
        doc["message"]["spatial"][0]["geometry"] = geometry
    return orjson.dumps(doc)


async def _spin(query, now):
    """A search that never ends by itself: only the budget in force stops it."""
    work = budget.current()
    assert work is not None, "the service puts a budget in force for the search"
    with work.running():
        while True:
            budget.check()


async def test_sync_discover_past_its_budget_is_a_400_naming_the_limit(network):
    client = await start_client(create_app(network.settings(discover_work_ms=20)))
    try:
        client.app[STORAGE].search = _spin
        body = discover_body(network)
        resp = await client.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
        doc = orjson.loads(await resp.read())
        assert resp.status == 400, doc
        assert doc["error"]["code"] == "SCH_SCHEMA_VALIDATION_FAILED"
        assert "20 ms (CDS_DISCOVER_WORK_MS)" in doc["error"]["message"]
    finally:
        await client.close()


async def test_async_discover_past_its_budget_gets_an_on_discover_with_the_error(network):
    client = await start_client(create_app(network.settings(discover_work_ms=20)))
    try:
        client.app[STORAGE].search = _spin
        body = discover_body(network)
        resp = await client.post("/beckn/discover", data=body, headers=network.bap.sign(body))
        assert resp.status == 200                        # ACKed: the cost shows only when the index is searched
        (path, _headers, cb), = await network.bap_sink.wait_for(1)
        doc = orjson.loads(cb)
        assert path == "/bap/on_discover"
        assert doc["context"]["message_id"] == orjson.loads(body)["context"]["message_id"]
        assert doc["message"]["catalogs"] == []
        assert doc["error"]["code"] == "SCH_SCHEMA_VALIDATION_FAILED"
        assert "CDS_DISCOVER_WORK_MS" in doc["error"]["message"]
    finally:
        await client.close()


async def test_costly_planning_is_refused_before_the_ack(network):
    # A 10,000-vertex polygon takes tens of ms to prepare: over a 1 ms budget the POST itself is refused.
    import math
    pts = [[77.5 + 0.5 * math.cos(2 * math.pi * i / 9999), 12.9 + 0.5 * math.sin(2 * math.pi * i / 9999)]
           for i in range(9999)]
    geometry = {"type": "Polygon", "coordinates": [pts + [pts[0]]]}
    client = await start_client(create_app(network.settings(discover_work_ms=1)))
    try:
        body = discover_body(network, geometry)
        resp = await client.post("/beckn/discover", data=body, headers=network.bap.sign(body))
        doc = orjson.loads(await resp.read())
        assert resp.status == 400 and "CDS_DISCOVER_WORK_MS" in doc["error"]["message"], doc
        assert network.bap_sink.received == []
    finally:
        await client.close()
