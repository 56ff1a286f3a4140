"""Per-BPP circuit breaker: both implementations (memory, and Redis on a real server) keep the same
semantics, and a CDS stops calling a failing BPP and probes it again after the cool-down (service clock)."""

from __future__ import annotations

import orjson
import pytest

from cds.fanout.circuit import CLOSED, HALF_OPEN, OPEN, MemoryCircuitBreaker, RedisCircuitBreaker
from tests.fanout_mocks import discover_doc, metric, start_bpps, start_cds


@pytest.fixture(params=["memory", "redis"])
async def breaker(request):
    if request.param == "memory":
        yield MemoryCircuitBreaker(failures=3, cooldown_s=30)
        return
    from redis.asyncio import Redis

    client = Redis.from_url(request.getfixturevalue("redis_url"))
    yield RedisCircuitBreaker(client, failures=3, cooldown_s=30)
    await client.aclose()


async def test_consecutive_failures_open_the_circuit(breaker):
    t = 1000.0
    for _ in range(2):
        assert (await breaker.admit(["a"], 5, t)).admitted == ["a"]
        assert await breaker.record("a", False, t) == CLOSED
    await breaker.record("a", True, t)          # a success resets the count
    for i in range(3):
        assert await breaker.record("a", False, t) == (OPEN if i == 2 else CLOSED)
    adm = await breaker.admit(["a", "b"], 5, t + 29.9)
    assert adm.admitted == ["b"]
    assert adm.states == {"a": OPEN, "b": CLOSED}
    assert await breaker.state("a", t + 1) == OPEN


async def test_states_read_many_circuits_at_once(breaker):
    t = 1000.0
    for _ in range(3):
        await breaker.record("a", False, t)
    await breaker.record("b", False, t)
    assert await breaker.states(["a", "b", "never-seen"], t + 1) == {"a": OPEN, "b": CLOSED, "never-seen": CLOSED}
    assert await breaker.states(["a"], t + 31) == {"a": HALF_OPEN}
    assert await breaker.states([], t) == {}


async def test_one_half_open_probe_after_the_cooldown(breaker):
    t = 1000.0
    for _ in range(3):
        await breaker.record("a", False, t)
    assert (await breaker.admit(["a"], 5, t + 30)).admitted == ["a"]       # the probe
    adm = await breaker.admit(["a"], 5, t + 31)                               # no second probe meanwhile
    assert adm.admitted == [] and adm.states == {"a": HALF_OPEN}
    assert await breaker.record("a", False, t + 31) == OPEN                  # the probe failed: open again
    assert (await breaker.admit(["a"], 5, t + 60)).admitted == []
    assert (await breaker.admit(["a"], 5, t + 61)).admitted == ["a"]        # next probe
    assert await breaker.record("a", True, t + 61) == CLOSED
    assert (await breaker.admit(["a"], 5, t + 61)).admitted == ["a"]
    assert (await breaker.admit(["a"], 5, t + 61)).admitted == ["a"]        # closed: no limit on calls


async def test_a_lost_probe_frees_the_slot_after_another_cooldown(breaker):
    t = 1000.0
    for _ in range(3):
        await breaker.record("a", False, t)
    assert (await breaker.admit(["a"], 5, t + 30)).admitted == ["a"]        # probe never reports back
    assert (await breaker.admit(["a"], 5, t + 59)).admitted == []
    assert (await breaker.admit(["a"], 5, t + 60)).admitted == ["a"]


async def test_admission_stops_at_the_limit_without_spending_probes(breaker):
    t = 1000.0
    for _ in range(3):
        await breaker.record("c", False, t)
    adm = await breaker.admit(["a", "b", "c"], 2, t + 30)
    assert adm.admitted == ["a", "b"]
    assert "c" not in adm.states                    # not looked at: its probe is still available
    assert (await breaker.admit(["c"], 1, t + 30)).admitted == ["c"]


async def test_redis_state_is_shared_and_expires(redis_url):
    from redis.asyncio import Redis

    r1, r2 = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        a, b = RedisCircuitBreaker(r1, failures=2, cooldown_s=30), RedisCircuitBreaker(r2, failures=2, cooldown_s=30)
        await a.record("x", False, 100.0)
        await b.record("x", False, 100.0)             # two replicas' failures add up
        assert (await a.admit(["x"], 1, 101.0)).admitted == []
        assert (await b.admit(["x"], 1, 130.0)).admitted == ["x"]
        assert (await a.admit(["x"], 1, 130.0)).admitted == []   # the other replica cannot probe too
        ttl = await r1.ttl("cds:{cb}:x")
        assert 0 < ttl <= 86400
    finally:
        await r1.aclose()
        await r2.aclose()


async def test_cds_stops_calling_a_failing_bpp_and_probes_after_the_cooldown(network):
    network.bpp.status = "UNSUBSCRIBED"
    now = [1_900_000_000.0]
    cds = await start_cds(network, clock=lambda: now[0], circuit_failures=2, circuit_cooldown_s=30)
    bpps = await start_bpps(network, {"flaky": {"mode": "5xx"}})
    flaky = bpps["flaky"]
    gauge = 'cds_fanout_circuit_open{bpp="flaky.bpp.test"}'

    async def discover() -> None:
        body = orjson.dumps(discover_doc(network))
        resp = await cds.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
        assert resp.status == 200

    try:
        await discover()
        await discover()
        assert len(flaky.received) == 2
        assert await metric(cds, gauge) == 1
        await discover()
        assert len(flaky.received) == 2                  # open: not called
        now[0] += 29
        await discover()
        assert len(flaky.received) == 2
        now[0] += 2                                      # cool-down over: one probe, which fails
        await discover()
        assert len(flaky.received) == 3
        await discover()
        assert len(flaky.received) == 3                  # open again
        now[0] += 31
        flaky.mode = "reply"                             # it recovered: the probe succeeds and closes it
        await discover()
        assert len(flaky.received) == 4
        assert await metric(cds, gauge) == 0
        await discover()
        await discover()
        assert len(flaky.received) == 6
    finally:
        await cds.close()
        await flaky.close()
