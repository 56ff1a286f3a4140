"""Fan-out across replicas sharing one real Redis: a BPP's reply that lands on the replica that did not
send the request still reaches the BAP through the one that did; the circuit is shared; and the pending
stores (memory and Redis) decide offers the same way, with every Redis key under a TTL."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from cds.fanout.pending import (ACCEPTED, DUPLICATE, LATE, NOT_TARGETED, UNKNOWN, MemoryPendingStore, PendingRecord,
                         RedisPendingStore, Reply, pending_key)
from tests.fanout_mocks import (catalog_for, discover_doc, expected_items, metric, publish_cached, reply_items,
                                start_bpps, start_cds)
from tests.independent import verify_beckn_signature

DELIVERED = 'cds_callbacks_total{action="on_discover",outcome="delivered"}'


async def two_replicas(network, redis_url, **settings):
    """Two CDS apps sharing the Redis (each with its own embedded index: one writer per data directory)."""
    a = await start_cds(network, redis_url=redis_url, data_dir=str(network.tmp / "data-a"), **settings)
    try:
        b = await start_cds(network, redis_url=redis_url, data_dir=str(network.tmp / "data-b"), **settings)
    except BaseException:
        await a.close()
        raise
    return a, b


def base_url(client) -> str:
    return f"http://127.0.0.1:{client.server.port}/beckn"


async def test_reply_on_the_other_replica_reaches_the_bap_through_the_first(network, redis_url):
    a, b = await two_replicas(network, redis_url, fanout_timeout_ms=20000)
    bpps = await start_bpps(network, {"fast": {"catalogs": [catalog_for("fast.bpp.test", shift=0.003)]},
                                      "slow": {"delay": 0.2}})
    for bpp in bpps.values():
        bpp.reply_to = base_url(b)            # the load balancer sends every reply to replica B
    try:
        cached = await publish_cached(network, a)
        sent = discover_doc(network)
        body = orjson.dumps(sent)
        assert (await a.post("/beckn/discover", data=body, headers=network.bap.sign(body))).status == 200
        # Everyone answered long before the 20 s deadline: the answer comes from the pub/sub wake-up.
        ((_p, headers, cb_body),) = await network.bap_sink.wait_for(1, timeout=10)
        verify_beckn_signature(headers["Authorization"], cb_body, network.cds.public_key)
        cb = orjson.loads(cb_body)
        assert cb["context"]["message_id"] == sent["context"]["message_id"]
        assert reply_items(cb) == expected_items([cached, bpps["fast"].catalogs[0], bpps["slow"].catalogs[0]])
        for bpp in bpps.values():
            assert bpp.reply_results == [(200, {"message": {"ack": {"status": "ACK"}}})]
            ((h, d),) = bpp.received
            assert orjson.loads(d)["context"]["bap_uri"] == base_url(a)  # asked by A
        assert await metric(a, DELIVERED) == 1 and await metric(b, DELIVERED) == 0
        assert await metric(b, 'cds_fanout_replies_total{bpp="slow.bpp.test",result="accepted"}') == 1
        assert await metric(a, 'cds_fanout_replies_total{bpp="slow.bpp.test",result="accepted"}') == 0
        # A second reply from the same BPP, again on B: ACKed, dropped, nothing more sent to the BAP.
        status, _ = await bpps["fast"].reply(sent)
        assert status == 200
        await asyncio.sleep(0.2)
        assert len(network.bap_sink.received) == 1
        # An unknown message on B: 400.
        other = dict(sent, context={**sent["context"], "message_id": "never-sent"})
        status, doc = await bpps["fast"].reply(other)
        assert (status, doc["error"]["code"]) == (400, "CTX_TRANSACTION_ID_UNKNOWN")
    finally:
        for c in (a, b):
            await c.close()
        for bpp in bpps.values():
            await bpp.close()


async def test_sync_get_on_one_replica_with_replies_on_the_other(network, redis_url):
    network.bpp.status = "UNSUBSCRIBED"
    a, b = await two_replicas(network, redis_url, fanout_timeout_ms=20000)
    bpps = await start_bpps(network, {"fast": {}, "slow": {"delay": 0.1, "catalogs": [
        catalog_for("slow.bpp.test", shift=-0.002)]}})
    for bpp in bpps.values():
        bpp.reply_to = base_url(b)
    try:
        body = orjson.dumps(discover_doc(network))
        resp = await asyncio.wait_for(a.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body)), 10)
        doc = orjson.loads(await resp.read())
        assert reply_items(doc) == expected_items([bpps["fast"].catalogs[0], bpps["slow"].catalogs[0]])
    finally:
        for c in (a, b):
            await c.close()
        for bpp in bpps.values():
            await bpp.close()


async def test_late_reply_on_the_other_replica_is_acked_and_dropped(network, redis_url):
    network.bpp.status = "UNSUBSCRIBED"
    a, b = await two_replicas(network, redis_url, fanout_timeout_ms=300)
    bpps = await start_bpps(network, {"late": {"delay": 0.8}})
    bpps["late"].reply_to = base_url(b)
    try:
        body = orjson.dumps(discover_doc(network))
        assert (await a.post("/beckn/discover", data=body, headers=network.bap.sign(body))).status == 200
        ((_p, _h, cb_body),) = await network.bap_sink.wait_for(1)
        assert orjson.loads(cb_body)["message"]["catalogs"] == []
        await asyncio.wait_for(bpps["late"].replied.wait(), 10)
        assert bpps["late"].reply_results == [(200, {"message": {"ack": {"status": "ACK"}}})]
        await asyncio.sleep(0.2)
        assert len(network.bap_sink.received) == 1
        assert await metric(b, 'cds_fanout_replies_total{bpp="late.bpp.test",result="late"}') == 1
    finally:
        for c in (a, b):
            await c.close()
        await bpps["late"].close()


async def test_circuit_is_shared_by_the_replicas(network, redis_url):
    network.bpp.status = "UNSUBSCRIBED"
    a, b = await two_replicas(network, redis_url, circuit_failures=1, circuit_cooldown_s=300)
    bpps = await start_bpps(network, {"broken": {"mode": "5xx"}})
    try:
        for client in (a, b):
            body = orjson.dumps(discover_doc(network))
            resp = await client.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
            assert resp.status == 200
        assert len(bpps["broken"].received) == 1  # opened by A's failure, B does not call it
    finally:
        for c in (a, b):
            await c.close()
        await bpps["broken"].close()


# ---- the stores themselves ------------------------------------------------------------------------------

@pytest.fixture(params=["memory", "redis"])
async def stores(request):
    """(owner store, other replica's store) sharing state."""
    if request.param == "memory":
        s = MemoryPendingStore()
        yield s, s, None
        return
    from redis.asyncio import Redis

    r1, r2 = Redis.from_url(request.getfixturevalue("redis_url")), Redis.from_url(request.getfixturevalue("redis_url"))
    owner, other = RedisPendingStore(r1), RedisPendingStore(r2)
    await owner.start()
    await other.start()
    yield owner, other, r1
    await owner.close()
    await other.close()
    await r1.aclose()
    await r2.aclose()


def _reply(bpp: str, at: float | None = None) -> Reply:
    return Reply(bpp_id=bpp, received_at=time.time() if at is None else at, payload=b"\x90")


async def test_offer_verdicts_and_finish(stores):
    owner, other, _redis = stores
    key = pending_key("t1", "m1")
    rec = PendingRecord(transaction_id="t1", message_id="m1", targets=["a", "b", "c"], deadline=time.time() + 30,
                        owner=owner.owner, intent=b"\x80")
    assert await owner.open(key, rec, 60)
    assert not await owner.open(key, rec, 60)                      # one fan-out per (transaction, message)
    ev = owner.watch(key)
    assert (await other.lookup(key, "a", time.time()))[0] == ACCEPTED
    assert (await other.lookup(key, "a", time.time()))[1] == rec
    assert await other.offer(key, _reply("a")) == ACCEPTED
    await asyncio.wait_for(ev.wait(), 5)                           # the owner is woken (pub/sub for Redis)
    assert await other.offer(key, _reply("a")) == DUPLICATE
    assert await other.offer(key, _reply("zz")) == NOT_TARGETED
    assert await other.offer(key, _reply("b", at=rec.deadline + 1)) == LATE
    assert await other.offer(pending_key("t1", "other"), _reply("a")) == UNKNOWN
    assert await other.offer(key, _reply("b")) == ACCEPTED
    assert [r.bpp_id for r in await owner.replies(key)] == ["a", "b"]
    assert [r.bpp_id for r in await owner.replies(key, 1)] == ["b"]
    assert [r.bpp_id for r in await owner.finish(key)] == ["a", "b"]
    assert await other.offer(key, _reply("c")) == LATE            # finished: late, not lost
    assert (await other.lookup(key, "c", time.time()))[0] == LATE
    owner.unwatch(key)


async def test_redis_keys_all_expire(redis_url):
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url)
    store = RedisPendingStore(r)
    await store.start()
    try:
        key = pending_key("t", "m")
        rec = PendingRecord(transaction_id="t", message_id="m", targets=["a"], deadline=time.time() + 5,
                            owner=store.owner)
        assert await store.open(key, rec, 20)
        assert await store.offer(key, _reply("a")) == ACCEPTED
        keys = [k async for k in r.scan_iter("cds:fo:*")]
        assert len(keys) == 2
        for k in keys:
            assert 0 < await r.pttl(k) <= 20_000
    finally:
        await store.close()
        await r.aclose()


async def test_memory_store_is_bounded():
    store = MemoryPendingStore(max_entries=2)
    rec = PendingRecord(transaction_id="t", message_id="m", targets=["a"], deadline=time.time() + 5, owner="o")
    assert await store.open("k1", rec, 10)
    assert await store.open("k2", rec, 10)
    assert not await store.open("k3", rec, 10)                   # full: answered from the cache only
    store2 = MemoryPendingStore(max_entries=1)
    assert await store2.open("k1", rec, 0.01)
    await asyncio.sleep(0.02)
    assert await store2.open("k2", rec, 10)                      # expired entries make room


async def test_redis_outage_answers_from_the_cache_and_asks_repliers_to_retry(network, redis_server, redis_url):
    network.bpp.status = "UNSUBSCRIBED"
    cds = await start_cds(network, redis_url=redis_url)
    bpps = await start_bpps(network, {"fast": {}})
    bpps["fast"].reply_to = base_url(cds)
    try:
        redis_server.stop()
        sent = discover_doc(network)
        body = orjson.dumps(sent)
        resp = await cds.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
        assert resp.status == 200
        assert orjson.loads(await resp.read())["message"]["catalogs"] == []
        assert bpps["fast"].received == []        # no shared state: no fan-out, the cached answer still goes out
        assert await metric(cds, 'cds_fanout_skipped_total{reason="state_unavailable"}') == 1
        status, doc = await bpps["fast"].reply(sent)
        assert (status, doc["error"]["code"]) == (503, "NET_DOWNSTREAM_UNAVAILABLE")
    finally:
        if redis_server.proc is None:
            redis_server.start()
        await cds.close()
        await bpps["fast"].close()
