"""The protocol core over real HTTP: every route and alias, ACK/NACK shapes and codes, signature
and ownership checks, replays, body limits, and signed callbacks verified independently."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.harness import Participant, fresh_context, load_fixture
from tests.independent import verify_beckn_signature

DISCOVER = "UBC_discovery-within-boundary-with-connection-spec.json"
PUBLISH = "UBC_catalog_publish_ev-charging-catalog-publish.json"


def discover_body(net, name: str = DISCOVER, **ctx) -> bytes:
    doc = fresh_context(load_fixture(name), **{"bap_id": net.bap.subscriber_id, "bap_uri": net.bap.url, **ctx})
    return orjson.dumps(doc)


def publish_body(net, publisher: Participant | None = None, **ctx) -> bytes:
    p = publisher or net.bpp
    doc = fresh_context(load_fixture(PUBLISH), **{"bpp_id": p.subscriber_id, "bpp_uri": p.url, **ctx})
    for cat in doc["message"]["catalogs"]:
        cat["beckn:bppId"], cat["beckn:bppUri"] = p.subscriber_id, p.url  # the fixture names another BPP
    return orjson.dumps(doc)


def assert_nack(resp_status: int, body: bytes, status: int, code: str) -> dict:
    doc = orjson.loads(body)
    assert resp_status == status, doc
    assert doc["message"]["ack"]["status"] == "NACK"
    assert doc["error"]["code"] == code, doc
    assert doc["error"]["message"]
    return doc


@pytest.mark.parametrize("path", ["/beckn/discover", "/discover"])
async def test_post_discover_acks_and_delivers_signed_on_discover(cds, network, path):
    body = discover_body(network)
    resp = await cds.post(path, data=body, headers=network.bap.sign(body))
    assert resp.status == 200
    assert orjson.loads(await resp.read()) == {"message": {"ack": {"status": "ACK"}}}
    (cb_path, headers, cb_body), = await network.bap_sink.wait_for(1)
    assert cb_path == "/bap/on_discover"
    attrs = verify_beckn_signature(headers["Authorization"], cb_body, network.cds.public_key)
    assert attrs["keyId"].split("|")[0] == network.cds.subscriber_id
    doc = orjson.loads(cb_body)
    sent = orjson.loads(body)["context"]
    assert doc["context"]["action"] == "on_discover"
    assert doc["context"]["transaction_id"] == sent["transaction_id"]
    assert doc["context"]["message_id"] == sent["message_id"]
    assert doc["context"]["bpp_id"] == network.cds.subscriber_id
    assert doc["message"]["catalogs"] == []


async def test_get_discover_is_synchronous(cds, network):
    body = discover_body(network)
    resp = await cds.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
    assert resp.status == 200
    doc = orjson.loads(await resp.read())
    assert doc["context"]["action"] == "on_discover"
    assert "catalogs" in doc["message"]


@pytest.mark.parametrize("path", ["/beckn/catalog/publish", "/beckn/v2/catalog/publish", "/catalog/publish",
                                  "/catalog_publish", "/beckn/catalog_publish"])
async def test_publish_aliases_ack_and_report(cds, network, path):
    body = publish_body(network)
    resp = await cds.post(path, data=body, headers=network.bpp.sign(body))
    assert resp.status == 200, await resp.text()
    (cb_path, headers, cb_body), = await network.bpp_sink.wait_for(1)
    assert cb_path == "/bpp/on_catalog_publish"
    verify_beckn_signature(headers["Authorization"], cb_body, network.cds.public_key)
    doc = orjson.loads(cb_body)
    sent = orjson.loads(body)["context"]
    assert doc["context"]["action"] == "on_catalog_publish"
    assert (doc["context"]["transaction_id"], doc["context"]["message_id"]) == (sent["transaction_id"], sent["message_id"])
    (result,) = doc["message"]["results"]
    assert result == {**result, "catalog_id": "catalog-ev-charging-001", "status": "ACCEPTED", "item_count": 3}


async def test_published_catalog_is_discoverable(cds, network):
    body = publish_body(network)
    assert (await cds.post("/beckn/catalog/publish", data=body, headers=network.bpp.sign(body))).status == 200
    await network.bpp_sink.wait_for(1)
    q = discover_body(network, "UBC_discovery-by-QR.json")
    resp = await cds.request("GET", "/beckn/discover", data=q, headers=network.bap.sign(q))
    catalogs = orjson.loads(await resp.read())["message"]["catalogs"]
    items = [i["beckn:id"] for c in catalogs for i in c["beckn:items"]]
    assert items == ["IND*ecopower-charging*cs-01*IN*ECO*BTM*01*CCS2*A*CCS2-A"]
    assert catalogs[0]["beckn:bppId"] == network.bpp.subscriber_id


async def test_post_with_prefer_representation_answers_like_the_get(cds, network):
    """docs/decisions.md §W: browsers and `fetch` cannot send a GET body; `Prefer: return=representation`
    on the POST gets the same synchronous answer, says so, and no callback follows."""
    body = publish_body(network)
    assert (await cds.post("/beckn/catalog/publish", data=body, headers=network.bpp.sign(body))).status == 200
    await network.bpp_sink.wait_for(1)

    def items(doc: dict) -> list[str]:
        return [i["beckn:id"] for c in doc["message"]["catalogs"] for i in c["beckn:items"]]

    q = discover_body(network)
    got = await cds.request("GET", "/beckn/discover", data=q, headers=network.bap.sign(q))
    assert got.status == 200 and "Preference-Applied" not in got.headers
    expected = items(orjson.loads(await got.read()))
    assert len(expected) == 2                                         # CCS2 >= 50 kW in the boundary
    q = discover_body(network)
    resp = await cds.post("/beckn/discover", data=q,
                          headers={**network.bap.sign(q), "Prefer": "respond-async, RETURN=representation; x=1"})
    assert resp.status == 200
    assert resp.headers["Preference-Applied"] == "return=representation"
    doc = orjson.loads(await resp.read())
    assert doc["context"]["action"] == "on_discover"
    assert doc["context"]["message_id"] == orjson.loads(q)["context"]["message_id"]
    assert items(doc) == expected
    # An ordinary POST afterwards: its callback is the only one the BAP ever gets.
    plain = discover_body(network)
    resp = await cds.post("/beckn/discover", data=plain, headers={**network.bap.sign(plain), "Prefer": "return=minimal"})
    assert orjson.loads(await resp.read()) == {"message": {"ack": {"status": "ACK"}}}
    (_, _, cb_body), = await network.bap_sink.wait_for(1)
    assert orjson.loads(cb_body)["context"]["message_id"] == orjson.loads(plain)["context"]["message_id"]
    assert len(network.bap_sink.received) == 1


async def test_post_with_prefer_representation_nacks_like_the_get(cds, network):
    body = discover_body(network)
    resp = await cds.post("/beckn/discover", data=body, headers={"Prefer": "return=representation"})
    assert_nack(resp.status, await resp.read(), 401, "AUT_SIGNATURE_MISSING")
    assert "Preference-Applied" not in resp.headers


# ---- NACK paths -------------------------------------------------------------------------------

async def test_malformed_json(cds, network):
    body = b'{"context": {'
    resp = await cds.post("/beckn/discover", data=body, headers=network.bap.sign(body))
    assert_nack(resp.status, await resp.read(), 400, "SCH_INVALID_JSON")


async def test_random_bytes(cds, network):
    body = bytes(range(256)) * 4
    resp = await cds.post("/beckn/catalog/publish", data=body, headers=network.bap.sign(body))
    assert_nack(resp.status, await resp.read(), 400, "SCH_INVALID_JSON")


async def test_missing_context(cds, network):
    body = b'{"message": {}}'
    resp = await cds.post("/beckn/discover", data=body, headers=network.bap.sign(body))
    assert_nack(resp.status, await resp.read(), 400, "CTX_MISSING_FIELD")


async def test_wrong_action(cds, network):
    body = discover_body(network, action="search")
    resp = await cds.post("/beckn/discover", data=body, headers=network.bap.sign(body))
    assert_nack(resp.status, await resp.read(), 400, "CTX_ACTION_MISMATCH")
    body = discover_body(network)
    resp = await cds.post("/beckn/catalog/publish", data=body, headers=network.bap.sign(body))
    assert_nack(resp.status, await resp.read(), 400, "CTX_ACTION_MISMATCH")


async def test_expired_ttl(cds, network):
    body = discover_body(network, timestamp="2020-01-01T00:00:00Z")
    resp = await cds.post("/beckn/discover", data=body, headers=network.bap.sign(body))
    assert_nack(resp.status, await resp.read(), 400, "CTX_TTL_EXPIRED")


async def test_missing_signature(cds, network):
    body = discover_body(network)
    resp = await cds.post("/beckn/discover", data=body, headers={"Content-Type": "application/json"})
    assert_nack(resp.status, await resp.read(), 401, "AUT_SIGNATURE_MISSING")
    assert resp.headers["WWW-Authenticate"].startswith("Signature realm=")


async def test_tampered_body_is_invalid_signature(cds, network):
    body = discover_body(network)
    headers = network.bap.sign(body)
    tampered = body.replace(b"CCS2", b"CCS1")
    resp = await cds.post("/beckn/discover", data=tampered, headers=headers)
    assert_nack(resp.status, await resp.read(), 401, "AUT_SIGNATURE_INVALID")
    assert "WWW-Authenticate" in resp.headers


async def test_expired_signature(cds, network):
    body = discover_body(network)
    headers = network.bap.sign(body, now=time.time() - 3600, ttl_s=60)
    resp = await cds.post("/beckn/discover", data=body, headers=headers)
    doc = assert_nack(resp.status, await resp.read(), 401, "AUT_SIGNATURE_INVALID")
    assert "expire" in doc["error"]["message"].lower()


async def test_unknown_subscriber(cds, network):
    stranger = Participant("stranger.example", "BAP", "http://127.0.0.1/x")
    body = discover_body(network, bap_id=stranger.subscriber_id)
    resp = await cds.post("/beckn/discover", data=body, headers=stranger.sign(body))
    assert_nack(resp.status, await resp.read(), 401, "AUT_SUBSCRIBER_NOT_FOUND")


async def test_revoked_subscriber(cds, network):
    revoked = network.add(Participant("revoked.example", "BAP", network.bap_sink.url, status="UNSUBSCRIBED"))
    body = discover_body(network, bap_id=revoked.subscriber_id, bap_uri=revoked.url)
    resp = await cds.post("/beckn/discover", data=body, headers=revoked.sign(body))
    assert_nack(resp.status, await resp.read(), 401, "AUT_KEY_EXPIRED_OR_REVOKED")


async def test_signer_must_be_the_bap(cds, network):
    body = discover_body(network)  # bap_id = bap.test, but signed by the BPP
    resp = await cds.post("/beckn/discover", data=body, headers=network.bpp.sign(body))
    assert_nack(resp.status, await resp.read(), 401, "AUT_UNAUTHORIZED_ACTION")


async def test_publish_for_someone_else_is_refused(cds, network):
    mallory = network.add(Participant("mallory.example", "BPP", network.bpp_sink.url + "/m"))
    body = publish_body(network, publisher=network.bpp)
    resp = await cds.post("/beckn/catalog/publish", data=body, headers=mallory.sign(body))
    assert_nack(resp.status, await resp.read(), 401, "AUT_UNAUTHORIZED_ACTION")
    # Claiming the context but not the catalog's beckn:bppId is refused too.
    doc = orjson.loads(publish_body(network, publisher=mallory))
    doc["message"]["catalogs"][0]["beckn:bppId"] = network.bpp.subscriber_id
    body = orjson.dumps(doc)
    resp = await cds.post("/beckn/catalog/publish", data=body, headers=mallory.sign(body))
    assert_nack(resp.status, await resp.read(), 401, "AUT_UNAUTHORIZED_ACTION")


async def test_oversized_body(network):
    from cds.api.app import create_app
    from tests.harness import start_client

    client = await start_client(create_app(network.settings(max_discover_bytes=2048)))
    try:
        body = discover_body(network)[:-1] + b', "pad": "' + b"x" * 4096 + b'"}'
        resp = await client.post("/beckn/discover", data=body, headers=network.bap.sign(body))
        doc = assert_nack(resp.status, await resp.read(), 413, "SCH_SCHEMA_VALIDATION_FAILED")
        assert "2048" in doc["error"]["message"]
    finally:
        await client.close()


async def test_body_limit_holds_without_a_content_length(network):
    """A chunked body (no Content-Length to refuse it early) that arrived whole with the headers is taken in one
    read: over the limit it is still a 413 NACK, within it the request is served."""
    from cds.api.app import create_app
    from tests.harness import start_client

    client = await start_client(create_app(network.settings(max_discover_bytes=2048)))
    try:
        body = discover_body(network)[:-1] + b', "pad": "' + b"x" * 4096 + b'"}'
        resp = await client.post("/beckn/discover", data=body, headers=network.bap.sign(body), chunked=True)
        doc = assert_nack(resp.status, await resp.read(), 413, "SCH_SCHEMA_VALIDATION_FAILED")
        assert "2048" in doc["error"]["message"]
        body = discover_body(network)
        assert len(body) <= 2048
        resp = await client.post("/beckn/discover", data=body, headers=network.bap.sign(body), chunked=True)
        assert resp.status == 200, await resp.text()
    finally:
        await client.close()


async def test_invalid_jsonpath_is_nacked(cds, network):
    doc = orjson.loads(discover_body(network))
    doc["message"]["filters"]["expression"] = "$[?(@.beckn:itemAttributes.connectorType == )]"
    body = orjson.dumps(doc)
    resp = await cds.post("/beckn/discover", data=body, headers=network.bap.sign(body))
    assert_nack(resp.status, await resp.read(), 400, "SCH_INVALID_JSONPATH")


async def test_unsolicited_on_discover(cds, network):
    doc = fresh_context(load_fixture("UBC_on_discover_ev-charging-on_discover.json"),
                        bap_id=network.cds.subscriber_id, bpp_id=network.bpp.subscriber_id, bpp_uri=network.bpp.url)
    body = orjson.dumps(doc)
    resp = await cds.post("/beckn/on_discover", data=body, headers=network.bpp.sign(body))
    assert_nack(resp.status, await resp.read(), 400, "CTX_TRANSACTION_ID_UNKNOWN")
    resp = await cds.post("/beckn/on_discover", data=body)
    assert_nack(resp.status, await resp.read(), 401, "AUT_SIGNATURE_MISSING")


# ---- replays, SSRF -----------------------------------------------------------------------------

async def test_replayed_discover_is_acked_but_processed_once(cds, network):
    body = discover_body(network)
    headers = network.bap.sign(body)
    for _ in range(3):
        resp = await cds.post("/beckn/discover", data=body, headers=headers)
        assert resp.status == 200
    await network.bap_sink.wait_for(1)
    # A fresh message after the replays proves the pipeline is flowing; still only 2 callbacks.
    body2 = discover_body(network)
    assert (await cds.post("/beckn/discover", data=body2, headers=network.bap.sign(body2))).status == 200
    received = await network.bap_sink.wait_for(2)
    await __import__("asyncio").sleep(0.2)
    assert len(network.bap_sink.received) == 2, received


async def test_replayed_publish_is_indexed_once(cds, network):
    body = publish_body(network)
    headers = network.bpp.sign(body)
    for _ in range(2):
        assert (await cds.post("/beckn/catalog/publish", data=body, headers=headers)).status == 200
    await network.bpp_sink.wait_for(1)
    await __import__("asyncio").sleep(0.3)
    assert len(network.bpp_sink.received) == 1


async def test_callback_to_private_address_refused_by_default(network):
    from cds.api.app import create_app
    from tests.harness import start_client

    client = await start_client(create_app(network.settings(allow_private_callbacks=False)))
    try:
        body = discover_body(network)  # bap_uri on 127.0.0.1
        resp = await client.post("/beckn/discover", data=body, headers=network.bap.sign(body))
        doc = assert_nack(resp.status, await resp.read(), 400, "CTX_INVALID_FIELD")
        assert "private" in doc["error"]["message"] or "loopback" in doc["error"]["message"]
    finally:
        await client.close()


async def test_callback_host_must_match_registry(cds, network):
    body = discover_body(network, bap_uri="http://evil.example.net/bap")
    resp = await cds.post("/beckn/discover", data=body, headers=network.bap.sign(body))
    doc = assert_nack(resp.status, await resp.read(), 400, "CTX_INVALID_FIELD")
    assert "registered" in doc["error"]["message"]


# ---- dialect B ------------------------------------------------------------------------------

async def test_dialect_b_discover_gets_lts_ack(cds, network):
    doc = load_fixture("spec/examples/lts-constructed/discover_radius_ccs2_window.json")
    doc = fresh_context(doc, bapId=network.bap.subscriber_id, bapUri=network.bap.url)
    body = orjson.dumps(doc)
    resp = await cds.post("/discover", data=body, headers=network.bap.sign(body))
    assert resp.status == 200, await resp.text()
    assert orjson.loads(await resp.read()) == {"status": "ACK"}
    (_p, _h, cb_body), = await network.bap_sink.wait_for(1)
    cb = orjson.loads(cb_body)
    assert cb["context"]["messageId"] == doc["context"]["messageId"]
    assert cb["context"]["action"] == "on_discover"


async def test_health_and_metrics(cds):
    assert (await cds.get("/health/live")).status == 200
    assert (await cds.get("/health/ready")).status == 200
    text = await (await cds.get("/metrics")).text()
    assert "cds_requests_total" in text and "process_resident_memory_bytes" in text
