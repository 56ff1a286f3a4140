"""Shared state in a real Redis: replay protection and the registry key cache agree across replicas, keep
their TTLs, and fall back to process-local stores while Redis is unreachable; two API replicas sharing one
Redis process a replayed request once and share one rate limit."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from redis.asyncio import Redis

from cds.api.app import create_app
from cds.trust.key_cache import MemoryKeyCache, RedisKeyCache
from cds.trust.registry import Registry
from cds.trust.subscribers import Negative, Subscriber
from cds.trust.replay import RedisReplayStore
from cds.api.appkeys import INGEST, REPLAY
from indexer.embedded.store import EmbeddedStorage
from tests.harness import start_client
from tests.stream_support import FAST, callbacks, wait_until
from tests.api.test_api_protocol import assert_nack, discover_body, publish_body


@pytest.fixture
async def dead_redis():
    r = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    yield r
    await r.aclose()


# ---- replay store ------------------------------------------------------------------------------

async def test_replay_store_is_shared_and_expires_with_the_signature(redis_url, redis):
    other = Redis.from_url(redis_url)
    try:
        a, b = RedisReplayStore(redis), RedisReplayStore(other)
        assert await a.first_seen("bpp|catalog_publish|m1", 30) is True
        assert await b.first_seen("bpp|catalog_publish|m1", 30) is False       # the other replica knows it
        assert await b.first_seen("bpp|catalog_publish|m2", 30) is True
        (key,) = [k for k in await redis.keys("cds:replay:*") if await redis.pttl(k) > 0][:1] or [None]
        assert key is not None and 0 < await redis.pttl(key) <= 30_000
        await a.forget("bpp|catalog_publish|m1")
        assert await b.first_seen("bpp|catalog_publish|m1", 30) is True         # forgotten: processed again
    finally:
        await other.aclose()


async def test_replay_keys_are_bounded_whatever_the_message_id(redis):
    store = RedisReplayStore(redis)
    assert await store.first_seen("bpp|discover|" + "x" * 100_000, 5)
    (key,) = await redis.keys("cds:replay:*")
    assert len(key) < 80


async def test_replay_concurrent_first_seen_admits_exactly_one(redis_url):
    clients = [Redis.from_url(redis_url) for _ in range(4)]
    try:
        stores = [RedisReplayStore(c) for c in clients]
        got = await asyncio.gather(*(s.first_seen("bap|discover|same", 60) for s in stores for _ in range(5)))
        assert got.count(True) == 1
    finally:
        for c in clients:
            await c.aclose()


async def test_replay_store_falls_back_to_memory_while_redis_is_down(dead_redis):
    store = RedisReplayStore(dead_redis)
    assert await store.first_seen("k", 10) is True
    assert await store.first_seen("k", 10) is False     # still caught on this replica
    await store.forget("k")
    assert await store.first_seen("k", 10) is True
    assert store.degraded.count >= 3


# ---- key cache ---------------------------------------------------------------------------------

SUB = Subscriber(subscriber_id="bpp.one", key_id="k1", type="BPP", domain="beckn.one:deg:ev-charging",
                 domains=["beckn.one:deg:ev-charging"], url="https://bpp.one/beckn", signing_public_key="cHVi",
                 valid_from=1.0, valid_until=4_000_000_000.0)


async def test_key_cache_round_trips_records_and_negatives_with_their_ttl(redis):
    cache = RedisKeyCache(redis)
    await cache.set("k:bpp.one|k1", SUB, 300)
    await cache.set("k:ghost|k9", Negative(code="AUT_KEY_NOT_FOUND", message="no such key"), 15)
    assert await cache.get("k:bpp.one|k1") == SUB
    assert await cache.get("k:ghost|k9") == Negative(code="AUT_KEY_NOT_FOUND", message="no such key")
    assert await cache.get("k:never|set") is None
    assert 290_000 < await redis.pttl("cds:keys:k:bpp.one|k1") <= 300_000
    assert 5_000 < await redis.pttl("cds:keys:k:ghost|k9") <= 15_000
    await cache.set("k:bpp.one|k1", SUB, 0)              # a TTL that already ran out removes the entry
    assert await cache.get("k:bpp.one|k1") is None
    await redis.set("cds:keys:k:junk", b"\xff\x00not msgpack")
    assert await cache.get("k:junk") is None              # unreadable (another version): a miss


async def test_key_cache_falls_back_to_memory_while_redis_is_down(dead_redis):
    cache = RedisKeyCache(dead_redis, fallback=MemoryKeyCache())
    await cache.set("k:bpp.one|k1", SUB, 60)
    assert await cache.get("k:bpp.one|k1") == SUB
    assert cache.degraded.count == 2


class CountingRegistry:
    """A remote registry (a mock of a remote party): counts the lookups it answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def lookup(self, subscriber_id: str, key_id: str | None) -> list[Subscriber]:
        self.calls += 1
        return [SUB] if subscriber_id == SUB.subscriber_id else []

    async def list_subscribers(self, type: str, domain: str) -> list[Subscriber] | None:
        return None


async def test_replicas_share_registry_lookups_and_negative_answers(redis_url, redis):
    other = Redis.from_url(redis_url)
    try:
        source = CountingRegistry()
        a = Registry([source], RedisKeyCache(redis), ttl_s=300, negative_ttl_s=15)
        b = Registry([source], RedisKeyCache(other), ttl_s=300, negative_ttl_s=15)
        assert (await a.lookup_key("bpp.one", "k1")).signing_public_key == "cHVi"
        assert (await b.lookup_key("bpp.one", "k1")).signing_public_key == "cHVi"
        assert source.calls == 1
        for reg in (a, b):
            with pytest.raises(Exception) as err:
                await reg.lookup_key("nobody", "k1")
            assert (err.value.code, err.value.status) == ("AUT_SUBSCRIBER_NOT_FOUND", 401)
        assert source.calls == 2                            # the refusal was cached for both
        assert await b.subscriber("bpp.one") == SUB         # the record cached by a's lookup
        assert source.calls == 2
    finally:
        await other.aclose()


# ---- two API replicas --------------------------------------------------------------------------

@pytest.fixture
async def replicas(network, redis_url, tmp_path):
    """Two API replicas sharing one Redis and one index (as with Elasticsearch)."""
    storage = EmbeddedStorage(tmp_path / "shared-index", fsync=False)
    await storage.open()
    settings = network.settings(redis_url=redis_url, **FAST)
    a = await start_client(create_app(settings, storage=storage))
    b = await start_client(create_app(settings, storage=storage))
    yield a, b
    await a.close()
    await b.close()
    await storage.close()


async def test_a_publish_replayed_to_the_other_replica_is_acked_but_processed_once(network, replicas):
    a, b = replicas
    assert isinstance(a.server.app[REPLAY], RedisReplayStore)
    body = publish_body(network)
    headers = network.bpp.sign(body)
    assert (await a.post("/beckn/catalog/publish", data=body, headers=headers)).status == 200
    resp = await b.post("/beckn/catalog/publish", data=body, headers=headers)       # the same signed request
    assert resp.status == 200
    assert orjson.loads(await resp.read()) == {"message": {"ack": {"status": "ACK"}}}
    await wait_until(lambda: callbacks(network.bpp_sink), what="on_catalog_publish")
    for app in (a.server.app, b.server.app):
        await app[INGEST].drain()
    assert len(callbacks(network.bpp_sink)) == 1
    processed = sum(c.server.app[INGEST].worker.metrics.publish_catalogs.labels("ACCEPTED")._value.get()
                    for c in (a, b))
    assert processed == 1


async def test_a_discover_replayed_to_the_other_replica_is_answered_once(network, replicas):
    a, b = replicas
    body = discover_body(network)
    headers = network.bap.sign(body)
    assert (await a.post("/beckn/discover", data=body, headers=headers)).status == 200
    assert (await b.post("/beckn/discover", data=body, headers=headers)).status == 200
    await network.bap_sink.wait_for(1)
    fresh = discover_body(network)      # a new message afterwards: its answer proves the first one is all
    assert (await b.post("/beckn/discover", data=fresh, headers=network.bap.sign(fresh))).status == 200
    await network.bap_sink.wait_for(2)
    await asyncio.sleep(0)      # let any (wrong) second answer to the replay land before counting
    ids = [orjson.loads(raw)["context"]["message_id"] for _, _, raw in network.bap_sink.received]
    sent = orjson.loads(body)["context"]["message_id"]
    assert ids.count(sent) == 1


async def test_replicas_share_one_rate_limit(network, redis_url, tmp_path):
    settings = network.settings(redis_url=redis_url, rate_limit_rps=0.001, rate_limit_burst=3, **FAST)
    storage = EmbeddedStorage(tmp_path / "idx", fsync=False)
    await storage.open()
    a = await start_client(create_app(settings, storage=storage))
    b = await start_client(create_app(settings, storage=storage))
    try:
        statuses = []
        for client in (a, b, a, b):
            body = discover_body(network)
            resp = await client.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
            statuses.append((resp.status, await resp.read()))
        assert [s for s, _ in statuses[:3]] == [200, 200, 200]
        assert_nack(*statuses[3], 429, "AUT_RATE_LIMITED")
    finally:
        await a.close()
        await b.close()
        await storage.close()
