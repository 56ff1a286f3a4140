"""Fan-out over real HTTP: mock BPPs (aiohttp servers with their own registry keys) answer the CDS's
discover in every way a BPP can, and the BAP must get exactly one merged, CDS-signed on_discover with the
right items (computed independently of the matcher) and nothing from the bad or late BPPs."""

from __future__ import annotations

import asyncio
import copy
import time

import msgspec
import orjson
import pytest

from cds.fanout.engine import classify, fanout_body, fanout_deadline, merge_hits, region_hints, region_ok
from cds.core.models import Context, DiscoverRequest, DiscoverIntent
from cds.trust.outbound import Delivery
from cds.trust.subscribers import Subscriber
from cds.api.appkeys import SETTINGS, STORAGE
from cds.core.normalize import normalize_catalog
from tests.fanout_mocks import (catalog_for, discover_doc, expected_items, metric, publish_cached,
                                refused_participant, reply_items, start_bpps, start_cds)
from tests.harness import Participant, fresh_context, load_fixture
from tests.independent import verify_beckn_signature


def assert_cds_signed(network, headers: dict, body: bytes) -> None:
    attrs = verify_beckn_signature(headers["Authorization"], body, network.cds.public_key)
    assert attrs["keyId"].split("|")[0] == network.cds.subscriber_id


def assert_fanout_discover(network, cds, bpp, sent: dict) -> None:
    """The BPP got the CDS's own signed discover: same ids, the CDS as BAP, the BAP's message unchanged."""
    ((headers, body),) = bpp.received
    assert_cds_signed(network, headers, body)
    doc = orjson.loads(body)
    ctx = doc["context"]
    assert ctx["bap_id"] == network.cds.subscriber_id
    assert ctx["bap_uri"] == f"http://127.0.0.1:{cds.server.port}/beckn"
    assert (ctx["transaction_id"], ctx["message_id"]) == (sent["context"]["transaction_id"],
                                                           sent["context"]["message_id"])
    assert ctx["bpp_id"] == bpp.subscriber_id
    assert doc["message"] == sent["message"]


async def close_all(cds, bpps) -> None:
    await cds.close()
    for b in bpps.values():
        await b.close()


async def test_one_merged_signed_on_discover_and_nothing_from_bad_or_late_bpps(network):
    cds = await start_cds(network, fanout_timeout_ms=1000)
    bpps = await start_bpps(network, {
        "fast": {"catalogs": [catalog_for("fast.bpp.test", shift=0.004)]},          # replies before its ACK
        "slow": {"delay": 0.3, "catalogs": [catalog_for("slow.bpp.test", shift=-0.003)]},
        "late": {"delay": 1.8},
        "err5xx": {"mode": "5xx"},
        "hang": {"mode": "hang"},
        "nack": {"mode": "nack"},
        "badsig": {"mode": "badsig"},
        "othermsg": {"mode": "othermsg"},
        "nomatch": {"catalogs": [catalog_for("nomatch.bpp.test", far=True)]},
    })
    network.add(refused_participant("refused.bpp.test"))
    try:
        cached = await publish_cached(network, cds)
        sent = discover_doc(network)
        body = orjson.dumps(sent)
        resp = await cds.post("/beckn/discover", data=body, headers=network.bap.sign(body))
        assert resp.status == 200

        ((path, headers, cb_body),) = await network.bap_sink.wait_for(1)
        # Delivered at the deadline, before the late BPP even sent its reply.
        assert not bpps["late"].reply_sent_at
        assert path == "/bap/on_discover"
        assert_cds_signed(network, headers, cb_body)
        cb = orjson.loads(cb_body)
        assert cb["context"]["action"] == "on_discover"
        assert (cb["context"]["transaction_id"], cb["context"]["message_id"]) == (
            sent["context"]["transaction_id"], sent["context"]["message_id"])
        assert cb["context"]["bpp_id"] == network.cds.subscriber_id
        want = expected_items([cached, bpps["fast"].catalogs[0], bpps["slow"].catalogs[0]])
        assert len(want) == 6
        assert reply_items(cb) == want

        # Every target got the CDS's discover; the caching BPP was not asked.
        for name in ("fast", "slow", "late", "err5xx", "hang", "nack", "badsig", "othermsg", "nomatch"):
            assert_fanout_discover(network, cds, bpps[name], sent)
        assert not [p for p, _h, _b in network.bpp_sink.received if p.endswith("/discover")]

        # How the CDS answered the replies.
        assert bpps["badsig"].reply_results[0][0] == 401
        assert bpps["badsig"].reply_results[0][1]["error"]["code"] == "AUT_SIGNATURE_INVALID"
        assert bpps["othermsg"].reply_results[0][0] == 400
        assert bpps["othermsg"].reply_results[0][1]["error"]["code"] == "CTX_TRANSACTION_ID_UNKNOWN"
        for name in ("fast", "slow", "nomatch"):
            assert bpps[name].reply_results == [(200, {"message": {"ack": {"status": "ACK"}}})]

        # The late reply is ACKed and dropped: never forwarded.
        await asyncio.wait_for(bpps["late"].replied.wait(), 10)
        assert bpps["late"].reply_results == [(200, {"message": {"ack": {"status": "ACK"}}})]
        await asyncio.sleep(0.2)
        assert len(network.bap_sink.received) == 1

        # Per-BPP metrics tell what happened.
        assert await metric(cds, 'cds_fanout_responses_total{bpp="err5xx.bpp.test",result="error"}') == 1
        assert await metric(cds, 'cds_fanout_responses_total{bpp="refused.bpp.test",result="error"}') == 1
        assert await metric(cds, 'cds_fanout_responses_total{bpp="nack.bpp.test",result="nack"}') == 1
        assert await metric(cds, 'cds_fanout_responses_total{bpp="fast.bpp.test",result="ack"}') == 1
        assert await metric(cds, 'cds_fanout_timeouts_total{bpp="late.bpp.test"}') == 1
        assert await metric(cds, 'cds_fanout_timeouts_total{bpp="hang.bpp.test"}') == 1
        assert await metric(cds, 'cds_fanout_timeouts_total{bpp="fast.bpp.test"}') == 0
        assert await metric(cds, 'cds_fanout_replies_total{bpp="late.bpp.test",result="late"}') == 1
        assert await metric(cds, 'cds_fanout_replies_total{bpp="slow.bpp.test",result="accepted"}') == 1
        assert await metric(cds, 'cds_fanout_reply_seconds_count{bpp="slow.bpp.test"}') == 1
        assert await metric(cds, 'cds_fanout_merged_callback_seconds_count{mode="async"}') == 1
    finally:
        await close_all(cds, bpps)


async def test_sync_get_waits_and_answers_as_soon_as_every_target_replied(network):
    # A deadline far beyond the client's patience: the answer must come from "everyone answered".
    network.bpp.status = "UNSUBSCRIBED"  # never a target (docs/decisions.md §22)
    expired = Participant("expired.bpp.test", "BPP", network.bpp_sink.url + "/x", valid_until=time.time() - 60)
    network.add(expired)
    cds = await start_cds(network, fanout_timeout_ms=20000)
    bpps = await start_bpps(network, {"fast": {}, "slow": {"delay": 0.2, "catalogs": [
        catalog_for("slow.bpp.test", shift=0.002)]}})
    try:
        body = orjson.dumps(discover_doc(network))
        resp = await asyncio.wait_for(
            cds.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body)), 10)
        assert resp.status == 200
        doc = orjson.loads(await resp.read())
        assert reply_items(doc) == expected_items([bpps["fast"].catalogs[0], bpps["slow"].catalogs[0]])
        assert network.bpp_sink.received == []  # neither the unsubscribed nor the expired BPP was asked
    finally:
        await close_all(cds, bpps)


async def test_live_reply_overrides_cached_data_of_the_same_item(network):
    network.bpp.status = "UNSUBSCRIBED"
    cds = await start_cds(network)
    bpps = await start_bpps(network, {"fast": {}})
    try:
        # Short-lived cached data of the same BPP (e.g. an earlier live reply): a stale copy of its first
        # item and one item the reply does not carry.
        stale = copy.deepcopy(bpps["fast"].catalogs[0])
        stale["beckn:items"][0]["beckn:descriptor"]["schema:name"] = "STALE"
        extra = copy.deepcopy(stale["beckn:items"][0])
        extra["beckn:id"] = "cached-only-item"
        stale["beckn:items"].append(extra)
        storage = cds.app[STORAGE]
        rec, _ = normalize_catalog(stale, publisher_id="fast.bpp.test", publisher_uri=None, dialect="A",
                                   settings=cds.app[SETTINGS], now=time.time())
        rec.meta = msgspec.structs.replace(rec.meta, live=True)
        await storage.replace_catalog(rec)

        body = orjson.dumps(discover_doc(network))
        resp = await cds.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
        doc = orjson.loads(await resp.read())
        got = reply_items(doc)
        assert len(got) == len(set(got))                       # one copy per (bpp, catalog, item)
        assert sorted(got) == sorted(expected_items([stale]))  # the reply's two items + the cached-only one
        names = {i["beckn:id"]: i["beckn:descriptor"]["schema:name"]
                 for c in doc["message"]["catalogs"] for i in c["beckn:items"]}
        first_id = bpps["fast"].catalogs[0]["beckn:items"][0]["beckn:id"]
        assert names[first_id] == bpps["fast"].catalogs[0]["beckn:items"][0]["beckn:descriptor"]["schema:name"]
        assert names["cached-only-item"] == "STALE"
        assert len(bpps["fast"].received) == 1  # live-only cached data does not stop the fan-out
    finally:
        await close_all(cds, bpps)


async def test_result_cap_applies_to_the_whole_merged_reply(network):
    cds = await start_cds(network, max_results=3)
    bpps = await start_bpps(network, {"fast": {"catalogs": [catalog_for("fast.bpp.test", shift=0.001)]},
                                      "slow": {"delay": 0.1, "catalogs": [catalog_for("slow.bpp.test", shift=-0.001)]}})
    try:
        cached = await publish_cached(network, cds)
        body = orjson.dumps(discover_doc(network))
        resp = await cds.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
        doc = orjson.loads(await resp.read())
        everything = expected_items([cached, bpps["fast"].catalogs[0], bpps["slow"].catalogs[0]])
        assert len(everything) == 6
        # The first three by the order key, grouped by catalog (independent computation with a cap).
        import tests.fanout_mocks as fm
        rows = []
        for cat in [cached, bpps["fast"].catalogs[0], bpps["slow"].catalogs[0]]:
            for it in cat["beckn:items"]:
                a = it["beckn:itemAttributes"]
                lon, lat = a["chargingStation"]["serviceLocation"]["geo"]["coordinates"]
                d = fm.haversine_m(*fm.QUERY_POINT, lon, lat)
                if a["connectorType"] == "CCS2" and a["maxPowerKW"] >= 50 and d <= fm.QUERY_RADIUS_M:
                    rows.append((d, cat["beckn:id"], cat["beckn:bppId"], it["beckn:id"]))
        top = sorted(rows)[:3]
        groups: dict = {}
        for _d, cid, bpp, iid in top:
            groups.setdefault((bpp, cid), []).append((bpp, iid))
        assert reply_items(doc) == [x for g in groups.values() for x in g]
    finally:
        await close_all(cds, bpps)


async def test_incremental_mode_sends_cached_first_then_one_callback_per_bpp(network):
    cds = await start_cds(network, fanout_incremental=True, fanout_timeout_ms=5000)
    bpps = await start_bpps(network, {"fast": {}, "slow": {"delay": 0.3}})
    try:
        cached = await publish_cached(network, cds)
        body = orjson.dumps(discover_doc(network))
        assert (await cds.post("/beckn/discover", data=body, headers=network.bap.sign(body))).status == 200
        received = await network.bap_sink.wait_for(3)
        docs = [orjson.loads(b) for _p, _h, b in received]
        for _p, h, b in received:
            assert_cds_signed(network, h, b)
        assert reply_items(docs[0]) == expected_items([cached])
        assert reply_items(docs[1]) == expected_items([bpps["fast"].catalogs[0]])
        assert reply_items(docs[2]) == expected_items([bpps["slow"].catalogs[0]])
        await asyncio.sleep(0.2)
        assert len(network.bap_sink.received) == 3
    finally:
        await close_all(cds, bpps)


async def test_reply_checks_signer_targeting_ownership_schema_and_duplicates(network):
    network.bpp.status = "UNSUBSCRIBED"
    cds = await start_cds(network, fanout_timeout_ms=3000)
    bpps = await start_bpps(network, {"quiet": {"mode": "silent"}, "other": {"mode": "silent"}})
    quiet, other = bpps["quiet"], bpps["other"]
    # A registered BPP of another domain: it can sign, but is never asked here.
    stranger = Participant("stranger.bpp.test", "BPP", "http://127.0.0.1:9/bpp")
    stranger.record = lambda: {**Participant.record(stranger), "domain": "nic2004:60212"}
    network.add(stranger)
    try:
        sent = discover_doc(network)
        body = orjson.dumps(sent)
        task = asyncio.ensure_future(cds.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body)))
        await asyncio.wait_for(quiet.got_discover.wait(), 5)
        await asyncio.wait_for(other.got_discover.wait(), 5)

        async def send(payload: bytes, signer: Participant):
            r = await cds.post("/beckn/on_discover", data=payload, headers=signer.sign(payload))
            return r.status, orjson.loads(await r.read())

        good = quiet.on_discover_body(sent)
        # Signed by another BPP than context.bpp_id.
        status, doc = await send(good, other.participant)
        assert (status, doc["error"]["code"]) == (401, "AUT_UNAUTHORIZED_ACTION")
        # A registered BPP that was not asked.
        d = orjson.loads(good)
        d["context"]["bpp_id"] = stranger.subscriber_id
        d["message"]["catalogs"][0]["beckn:bppId"] = stranger.subscriber_id
        status, doc = await send(orjson.dumps(d), stranger)
        assert (status, doc["error"]["code"]) == (400, "CTX_TRANSACTION_ID_UNKNOWN")
        # A catalog that names another BPP.
        d = orjson.loads(good)
        d["message"]["catalogs"][0]["beckn:bppId"] = other.subscriber_id
        status, doc = await send(orjson.dumps(d), quiet.participant)
        assert (status, doc["error"]["code"]) == (401, "AUT_UNAUTHORIZED_ACTION")
        # Unreadable catalogs.
        d = orjson.loads(good)
        d["message"]["catalogs"][0]["beckn:items"] = ["not an item"]
        status, doc = await send(orjson.dumps(d), quiet.participant)
        assert status == 400 and doc["error"]["code"].startswith("SCH_")
        # The good reply, then the same BPP again (ACKed, dropped).
        assert (await send(good, quiet.participant))[0] == 200
        d = orjson.loads(good)
        d["message"]["catalogs"][0]["beckn:items"][0]["beckn:descriptor"]["schema:name"] = "SECOND"
        assert (await send(orjson.dumps(d), quiet.participant))[0] == 200
        assert await metric(cds, 'cds_fanout_replies_total{bpp="quiet.bpp.test",result="duplicate"}') == 1

        resp = await asyncio.wait_for(task, 10)
        result = orjson.loads(await resp.read())
        assert reply_items(result) == expected_items([quiet.catalogs[0]])
        names = [i["beckn:descriptor"]["schema:name"] for c in result["message"]["catalogs"] for i in c["beckn:items"]]
        assert "SECOND" not in names
        # After the answer: the silent BPP's reply is late (ACK), an unknown message stays unknown (400).
        assert (await send(other.on_discover_body(sent), other.participant))[0] == 200
        assert await metric(cds, 'cds_fanout_replies_total{bpp="other.bpp.test",result="late"}') == 1
        d = orjson.loads(other.on_discover_body(sent))
        d["context"]["transaction_id"] = "never-seen"
        status, doc = await send(orjson.dumps(d), other.participant)
        assert (status, doc["error"]["code"]) == (400, "CTX_TRANSACTION_ID_UNKNOWN")
    finally:
        await close_all(cds, bpps)


async def test_no_fanout_for_another_domain_or_when_disabled(network):
    network.bpp.status = "UNSUBSCRIBED"
    bpps = await start_bpps(network, {"fast": {}})
    try:
        cds = await start_cds(network)
        try:
            body = orjson.dumps(discover_doc(network, domain="nic2004:60212"))
            resp = await cds.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
            assert resp.status == 200
            assert bpps["fast"].received == []
            assert await metric(cds, 'cds_fanout_skipped_total{reason="other_domain"}') == 1
            # A versioned domain of the same family does fan out (docs/decisions.md §1).
            body = orjson.dumps(discover_doc(network, domain="beckn.one:deg:ev-charging:2.0.0"))
            resp = await cds.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
            assert reply_items(orjson.loads(await resp.read())) == expected_items([bpps["fast"].catalogs[0]])
            assert len(bpps["fast"].received) == 1
        finally:
            await cds.close()
        cds = await start_cds(network, fanout_max_bpps=0)
        try:
            body = orjson.dumps(discover_doc(network))
            resp = await cds.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
            assert orjson.loads(await resp.read())["message"]["catalogs"] == []
            assert len(bpps["fast"].received) == 1  # not asked again
        finally:
            await cds.close()
    finally:
        for b in bpps.values():
            await b.close()


async def test_lts_request_without_domain_fans_out_in_the_served_domain(network):
    network.bpp.status = "UNSUBSCRIBED"
    cds = await start_cds(network, fanout_timeout_ms=500)
    bpps = await start_bpps(network, {"quiet": {"mode": "silent"}})
    try:
        doc = fresh_context(load_fixture("spec/examples/lts-constructed/discover_radius_ccs2_window.json"),
                            bapId=network.bap.subscriber_id, bapUri=network.bap.url)
        assert "domain" not in doc["context"]
        body = orjson.dumps(doc)
        assert (await cds.post("/discover", data=body, headers=network.bap.sign(body))).status == 200
        ((_p, headers, cb_body),) = await network.bap_sink.wait_for(1)
        assert orjson.loads(cb_body)["context"]["messageId"] == doc["context"]["messageId"]
        ((h, b),) = bpps["quiet"].received
        assert_cds_signed(network, h, b)
        sent = orjson.loads(b)
        assert sent["context"]["bapId"] == network.cds.subscriber_id
        assert sent["context"]["bapUri"] == f"http://127.0.0.1:{cds.server.port}/beckn"
        assert "bap_id" not in sent["context"]
        assert sent["message"] == doc["message"]
    finally:
        await close_all(cds, bpps)


async def test_target_cap_rotates_over_the_candidates(network):
    network.bpp.status = "UNSUBSCRIBED"
    cds = await start_cds(network, fanout_max_bpps=2, fanout_timeout_ms=300, circuit_failures=100)
    bpps = await start_bpps(network, {n: {"mode": "silent"} for n in ("a", "b", "c")})
    try:
        for i in range(3):
            body = orjson.dumps(discover_doc(network))
            await cds.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
            assert sum(len(b.received) for b in bpps.values()) == 2 * (i + 1)
        assert all(b.received for b in bpps.values())
    finally:
        await close_all(cds, bpps)


# ---- pure pieces ----------------------------------------------------------------------------------------

def _ctx(**kw) -> Context:
    base = dict(dialect="A", action="discover", transaction_id="t", message_id="m",
                timestamp="2026-01-01T00:00:00Z", ttl="PT30S")
    base.update(kw)
    return Context(**base)


T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def test_deadline_is_the_cap_or_what_ttl_leaves(network):
    s = network.settings(fanout_timeout_ms=3000, fanout_reserve_ms=200)
    assert fanout_deadline(_ctx(), T0, s) == pytest.approx(T0 + 3.0)
    assert fanout_deadline(_ctx(ttl="PT1S"), T0, s) == pytest.approx(T0 + 0.8)
    assert fanout_deadline(_ctx(ttl="PT1S"), T0 + 0.5, s) == pytest.approx(T0 + 0.8)
    assert fanout_deadline(_ctx(ttl="PT1S"), T0 + 0.79, s) is None        # nothing worth waiting for
    assert fanout_deadline(_ctx(ttl=None), T0, s) == pytest.approx(T0 + 3.0)


def test_fanout_body_changes_only_the_addressing(network):
    s = network.settings(subscriber_url="https://cds.example/beckn")
    raw = {"action": "discover", "bapId": "bap.x", "bapUri": "https://bap.x", "transactionId": "t", "messageId": "m",
           "timestamp": "2026-01-01T00:00:00Z", "networkId": "ubc"}
    msg = {"intent": {"filters": {"type": "jsonpath", "expression": "$[?(@.x == 1)]"}}}
    req = DiscoverRequest(context=Context(dialect="B", action="discover", raw=raw), intent=DiscoverIntent(), message=msg)
    out = orjson.loads(fanout_body(req, Subscriber(subscriber_id="bpp.y", url="https://bpp.y/b"), s))
    assert out["message"] == msg
    assert out["context"] == {**raw, "bapId": s.subscriber_id, "bapUri": "https://cds.example/beckn",
                              "bppId": "bpp.y", "bppUri": "https://bpp.y/b"}
    assert raw["bapId"] == "bap.x"  # the request itself is untouched


def test_classify_answers():
    ack = orjson.dumps({"message": {"ack": {"status": "ACK"}}})
    assert classify(Delivery(url="u", ok=True, status=200, response=ack)) == "ack"
    assert classify(Delivery(url="u", ok=True, status=200, response=b'{"status":"ACK"}')) == "ack"
    assert classify(Delivery(url="u", ok=True, status=200, response=b'{"status":"NACK"}')) == "nack"
    assert classify(Delivery(url="u", ok=True, status=200,
                             response=orjson.dumps({"message": {"ack": {"status": "NACK"}}}))) == "nack"
    assert classify(Delivery(url="u", ok=False, status=400)) == "nack"
    assert classify(Delivery(url="u", ok=False, status=503, error="HTTP 503")) == "error"
    assert classify(Delivery(url="u", ok=False, error="connect: refused")) == "error"
    assert classify(Delivery(url="u", ok=False, error="ServerTimeoutError: read")) == "timeout"
    assert classify(Delivery(url="u", ok=False, error="TimeoutError: ")) == "timeout"


def test_region_narrowing():
    ctx = {"location": {"city": {"code": "std:080"}, "country": {"code": "IND"}}}
    hints = region_hints(ctx)
    assert hints == {"std:080", "ind"}
    assert region_ok(Subscriber(subscriber_id="a", region="std:080"), hints)
    assert region_ok(Subscriber(subscriber_id="a", region="std:011, STD:080"), hints)
    assert not region_ok(Subscriber(subscriber_id="a", region="std:011"), hints)
    assert region_ok(Subscriber(subscriber_id="a"), hints)
    assert region_ok(Subscriber(subscriber_id="a", region="std:011"), set())


def test_merge_prefers_live_and_caps_the_whole():
    from cds.core.documents import CatalogMeta, Hit, ItemDoc

    def hit(bpp, item, dist, live=False, name=""):
        return Hit(item=ItemDoc(bpp_id=bpp, catalog_id="c", item_id=item, provider_name=name or None),
                   catalog=CatalogMeta(bpp_id=bpp, catalog_id="c", live=live), distance=dist)

    cached = [hit("a", "1", 10.0, name="old"), hit("a", "2", 20.0), hit("b", "1", 30.0)]
    live = [hit("a", "1", 5.0, live=True, name="new"), hit("c", "9", 15.0, live=True)]
    merged, overridden = merge_hits(cached, live, 3)
    assert overridden == 1
    assert [(h.item.bpp_id, h.item.item_id, h.item.provider_name) for h in merged] == [
        ("a", "1", "new"), ("c", "9", None), ("a", "2", None)]


# Arbitrary reply catalogs (random JSON spliced into a real catalog) either yield live hits or a clear
# BecknError (400/401 NACK), never another exception (which would be a 500 to the BPP).
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st  # noqa: E402

_json = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
                     | st.text(max_size=12),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                     max_leaves=12)
_paths = st.sampled_from(["beckn:items", "beckn:offers", "beckn:validity", "beckn:id", "beckn:items.0",
                          "beckn:items.0.beckn:itemAttributes", "beckn:items.0.beckn:id",
                          "beckn:items.0.beckn:itemAttributes.chargingStation",
                          "beckn:items.0.beckn:itemAttributes.maxPowerKW", "beckn:offers.0.beckn:price",
                          "beckn:offers.0.beckn:validity", "beckn:offers.0.beckn:items"])


@hsettings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=_paths, value=_json)
def test_reply_catalogs_never_raise_anything_but_beckn_errors(network, path, value):
    from cds.core.errors import BecknError
    from cds.fanout.engine import live_hits, reply_catalogs
    from cds.core.planner import build_query
    from cds.core.protocol import parse_discover

    s = network.settings()
    doc = discover_doc(network)
    query = build_query(parse_discover(doc, Context(dialect="A", action="discover")).intent, settings=s)
    cat = catalog_for("x.bpp.test")
    parts = path.split(".")
    node = cat
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    try:
        hits = live_hits(reply_catalogs({"message": {"catalogs": [cat]}}), bpp_id="x.bpp.test", bpp_uri=None,
                         dialect="A", query=query, settings=s, now=time.time())
    except BecknError as e:
        assert e.status in (400, 401) and e.code
    else:
        assert all(h.item.bpp_id == "x.bpp.test" and h.catalog.live for h in hits)


def test_re_filtering_a_reply_is_bounded_by_the_work_budget(network):
    """docs/decisions.md §24: the fan-out's re-filtering of a live reply has a discover's work budget; past it the
    reply is refused (a 400 naming the limit), whatever the reply holds."""
    import pytest
    from cds.core.budget import WorkBudget, WorkLimitExceeded
    from cds.fanout.engine import live_hits, reply_catalogs
    from cds.core.planner import build_query
    from cds.core.protocol import parse_discover

    s = network.settings()
    query = build_query(parse_discover(discover_doc(network), Context(dialect="A", action="discover")).intent,
                        settings=s)
    cats = [catalog_for("x.bpp.test", catalog_id=f"c{i}") for i in range(100)]
    for cat in cats:                      # 100 catalogs of 60 items: far more than 1 ms of work
        items = cat["beckn:items"]
        cat["beckn:items"] = [dict(items[k % len(items)], **{"beckn:id": f"i{k}"}) for k in range(60)]
    with pytest.raises(WorkLimitExceeded) as e:
        with WorkBudget(1, what="re-filtering this on_discover reply").running():
            live_hits(reply_catalogs({"message": {"catalogs": cats}}), bpp_id="x.bpp.test", bpp_uri=None,
                      dialect="A", query=query, settings=s, now=time.time())
    assert e.value.status == 400 and "re-filtering this on_discover reply" in e.value.message
    assert "CDS_DISCOVER_WORK_MS" in e.value.message
