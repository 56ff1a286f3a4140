"""Roles from the signer's registry record `type` (docs/decisions.md §23): only a BPP publishes or sends
on_discover, only a BAP discovers; anything else is a 401 AUT_UNAUTHORIZED_ACTION after the signature check."""

from __future__ import annotations

import orjson

from tests.api.test_api_protocol import assert_nack, discover_body, publish_body
from tests.harness import Participant, fresh_context, load_fixture


def on_discover_body(network, sender: Participant) -> bytes:
    doc = fresh_context(load_fixture("UBC_on_discover_ev-charging-on_discover.json"),
                        bap_id=network.cds.subscriber_id, bpp_id=sender.subscriber_id, bpp_uri=sender.url)
    return orjson.dumps(doc)


async def test_a_bap_cannot_publish(cds, network):
    body = publish_body(network, publisher=network.bap)   # bpp_id = the BAP itself: ownership would pass
    resp = await cds.post("/beckn/catalog/publish", data=body, headers=network.bap.sign(body))
    doc = assert_nack(resp.status, await resp.read(), 401, "AUT_UNAUTHORIZED_ACTION")
    assert "BAP" in doc["error"]["message"] and "BPP" in doc["error"]["message"]
    assert "WWW-Authenticate" in resp.headers


async def test_a_bpp_cannot_discover(cds, network):
    body = discover_body(network, bap_id=network.bpp.subscriber_id, bap_uri=network.bpp.url)
    resp = await cds.post("/beckn/discover", data=body, headers=network.bpp.sign(body))
    assert_nack(resp.status, await resp.read(), 401, "AUT_UNAUTHORIZED_ACTION")
    resp = await cds.request("GET", "/beckn/discover", data=body, headers=network.bpp.sign(body))
    assert_nack(resp.status, await resp.read(), 401, "AUT_UNAUTHORIZED_ACTION")


async def test_a_bap_cannot_send_on_discover(cds, network):
    body = on_discover_body(network, network.bap)
    resp = await cds.post("/beckn/on_discover", data=body, headers=network.bap.sign(body))
    assert_nack(resp.status, await resp.read(), 401, "AUT_UNAUTHORIZED_ACTION")
    # the same reply from a BPP gets past the role check (to "no pending request")
    body = on_discover_body(network, network.bpp)
    resp = await cds.post("/beckn/on_discover", data=body, headers=network.bpp.sign(body))
    assert_nack(resp.status, await resp.read(), 400, "CTX_TRANSACTION_ID_UNKNOWN")


async def test_roles_come_after_the_signature(cds, network):
    body = publish_body(network, publisher=network.bap)
    headers = network.bap.sign(body)
    resp = await cds.post("/beckn/catalog/publish", data=body.replace(b"CCS2", b"CCS1"), headers=headers)
    assert_nack(resp.status, await resp.read(), 401, "AUT_SIGNATURE_INVALID")


async def test_roles_come_before_the_schema(cds, network):
    doc = orjson.loads(publish_body(network, publisher=network.bap))
    doc["message"]["catalogs"] = "not a list"
    body = orjson.dumps(doc)
    resp = await cds.post("/beckn/catalog/publish", data=body, headers=network.bap.sign(body))
    assert_nack(resp.status, await resp.read(), 401, "AUT_UNAUTHORIZED_ACTION")


async def test_a_record_without_a_type_has_no_role(cds, network):
    untyped = Participant("untyped.example", "", network.bap_sink.url + "/u")
    network.add(untyped)
    body = discover_body(network, bap_id=untyped.subscriber_id, bap_uri=untyped.url)
    resp = await cds.post("/beckn/discover", data=body, headers=untyped.sign(body))
    doc = assert_nack(resp.status, await resp.read(), 401, "AUT_UNAUTHORIZED_ACTION")
    assert "no role" in doc["error"]["message"]


async def test_one_key_registered_as_bap_and_bpp_may_do_both(cds, network):
    both = Participant("both.example", "BAP", network.bap_sink.url + "/both")
    as_bpp = Participant("both.example", "BPP", both.url, key=both.key, key_id=both.key_id)
    network.add(both)
    network.add(as_bpp)
    body = discover_body(network, bap_id=both.subscriber_id, bap_uri=both.url)
    resp = await cds.post("/beckn/discover", data=body, headers=both.sign(body))
    assert resp.status == 200, await resp.text()
    body = publish_body(network, publisher=both)
    resp = await cds.post("/beckn/catalog/publish", data=body, headers=both.sign(body))
    assert resp.status == 200, await resp.text()
