"""Per-subscriber token buckets: in memory, in Redis (shared by replicas, atomic), and on the wire
(429 AUT_RATE_LIMITED with Retry-After, after authentication, per subscriber)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from cds.api.app import create_app
from cds.config import ConfigError, load_settings
from cds.trust.ratelimit import MemoryRateLimiter, RateLimited, RedisRateLimiter, burst_of, check_rate
from tests.harness import start_client
from tests.stream_support import callbacks, wait_until
from tests.api.test_api_protocol import assert_nack, discover_body


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_memory_bucket_allows_the_burst_then_refills_at_the_rate():
    clock = Clock()
    rl = MemoryRateLimiter(rate=2.0, burst=3, clock=clock)
    assert [await rl.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await rl.acquire("a") == pytest.approx(0.5)      # one token takes 1/rate seconds
    assert await rl.acquire("b") == 0.0                      # buckets are per subscriber
    clock.t += 0.5
    assert await rl.acquire("a") == 0.0
    assert await rl.acquire("a") == pytest.approx(0.5)
    clock.t += 100                                            # refill is capped at the burst
    assert [await rl.acquire("a") for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.5)]


async def test_memory_bucket_is_bounded():
    rl = MemoryRateLimiter(rate=1.0, burst=1, max_keys=10, clock=Clock())
    for k in range(100):
        await rl.acquire(f"s{k}")
    assert len(rl._buckets) == 10


async def test_check_rate_raises_429_and_exempts_replies():
    rl = MemoryRateLimiter(rate=1.0, burst=1, clock=Clock())
    await check_rate(rl, "bap", "discover")
    with pytest.raises(RateLimited) as err:
        await check_rate(rl, "bap", "discover")
    assert (err.value.code, err.value.status) == ("AUT_RATE_LIMITED", 429)
    assert err.value.retry_after == pytest.approx(1.0)
    await check_rate(rl, "bap", "on_discover")      # answers to our own fan-out are not limited
    await check_rate(None, "bap", "discover")       # limiting off


async def test_redis_bucket_is_shared_and_atomic(redis_url, redis):
    other = Redis.from_url(redis_url)
    try:
        a = RedisRateLimiter(redis, rate=0.001, burst=5)
        b = RedisRateLimiter(other, rate=0.001, burst=5)
        # 20 concurrent takes from two "replicas": exactly the burst is granted.
        waits = await asyncio.gather(*(rl.acquire("bpp.x") for rl in (a, b) for _ in range(10)))
        assert sum(1 for w in waits if w == 0.0) == 5
        assert all(w > 0 for w in waits if w != 0.0)
        assert await a.acquire("bpp.y") == 0.0
        assert a.degraded.count == 0 and b.degraded.count == 0
    finally:
        await other.aclose()


async def test_redis_bucket_refills_from_elapsed_time(redis):
    rl = RedisRateLimiter(redis, rate=2.0, burst=2, prefix="t:rl:")
    await rl.acquire("s")
    await rl.acquire("s")
    assert await rl.acquire("s") > 0
    # Pretend the last take was 10 s ago (on Redis's clock): the bucket is full again, not more.
    sec, usec = await redis.time()
    await redis.hset("t:rl:s", "at", f"{sec + usec / 1e6 - 10:.6f}")
    assert [await rl.acquire("s") for _ in range(3)][:2] == [0.0, 0.0]
    assert 0 < await redis.pttl("t:rl:s") <= 2000 + 1000      # expires once it would be full anyway


async def test_redis_unreachable_falls_back_to_local_limits():
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        rl = RedisRateLimiter(dead, rate=0.001, burst=2)
        assert [await rl.acquire("s") for _ in range(3)][:2] == [0.0, 0.0]
        assert await rl.acquire("s") > 0
        assert rl.degraded.count == 4
    finally:
        await dead.aclose()


def test_settings():
    s = load_settings({"CDS_RATE_LIMIT_RPS": "2.5"})
    assert (s.rate_limit_rps, burst_of(s)) == (2.5, 5.0)
    assert burst_of(load_settings({"CDS_RATE_LIMIT_RPS": "0.1"})) == 1.0
    assert burst_of(load_settings({"CDS_RATE_LIMIT_RPS": "1", "CDS_RATE_LIMIT_BURST": "30"})) == 30.0
    assert load_settings({}).rate_limit_rps == 0          # off by default
    with pytest.raises(ConfigError, match="CDS_RATE_LIMIT_RPS"):
        load_settings({"CDS_RATE_LIMIT_RPS": "-1"})


@pytest.mark.parametrize("with_redis", [False, True])
async def test_api_rate_limits_per_subscriber_after_authentication(network, request, with_redis):
    over = {"rate_limit_rps": 0.001, "rate_limit_burst": 2, "fanout_max_bpps": 0}
    if with_redis:
        over["redis_url"] = request.getfixturevalue("redis_url")
    cds = await start_client(create_app(network.settings(**over)))
    try:
        async def discover(headers=None):
            body = discover_body(network)
            resp = await cds.request("GET", "/beckn/discover", data=body, headers=headers or network.bap.sign(body))
            return resp, await resp.read()

        assert [(await discover())[0].status for _ in range(2)] == [200, 200]
        resp, raw = await discover()
        doc = assert_nack(resp.status, raw, 429, "AUT_RATE_LIMITED")
        assert network.bap.subscriber_id in doc["error"]["message"]
        assert int(resp.headers["Retry-After"]) >= 1
        # A forged request in the name of the limited BAP is a 401 (checks run in order, §8.12).
        resp, raw = await discover(headers={**network.bap.sign(b"{}"), "Content-Type": "application/json"})
        assert_nack(resp.status, raw, 401, "AUT_SIGNATURE_INVALID")
        # Another subscriber has its own budget.
        from tests.api.test_api_protocol import publish_body
        pub = publish_body(network)
        r = await cds.post("/beckn/catalog/publish", data=pub, headers=network.bpp.sign(pub))
        assert r.status == 200, await r.text()
        await wait_until(lambda: callbacks(network.bpp_sink), what="on_catalog_publish")
        assert callbacks(network.bpp_sink)[0]["message"]["results"][0]["status"] == "ACCEPTED"
    finally:
        await cds.close()
