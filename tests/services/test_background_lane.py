"""ACKs first (docs/decisions.md §P): discovers answered after their ACK compute in a background lane, at most
CDS_BACKGROUND_ANSWERS at a time and in short search slices, while synchronous discovers and new ACKs do not
wait for that lane."""

from __future__ import annotations

import asyncio

import orjson

from cds.api.app import create_app
from cds.api.appkeys import STORAGE
from cds.core import budget
from cds.services.discover import BACKGROUND_SLICE_S
from cds.services.idle import IdleGate
from tests.harness import fresh_context, load_fixture, start_client

DISCOVER = "UBC_discovery-within-a-circular-boundary.json"


def _body(net) -> bytes:
    return orjson.dumps(fresh_context(load_fixture(DISCOVER), bap_id=net.bap.subscriber_id, bap_uri=net.bap.url))


class Watch:
    """Wraps the app's real search: records how many run at once and the slice each was given."""

    def __init__(self, search, gate: asyncio.Event | None = None) -> None:
        self.search, self.gate = search, gate
        self.active = self.most = 0
        self.slices: list[float | None] = []

    async def __call__(self, query, now):
        self.active += 1
        self.most = max(self.most, self.active)
        self.slices.append(budget.current().slice_s)
        first = len(self.slices) == 1
        try:
            for _ in range(3):                       # long enough for the others to try to start
                await asyncio.sleep(0.01)
            if self.gate is not None and first:
                await self.gate.wait()
            return await self.search(query, now)
        finally:
            self.active -= 1


async def test_background_answers_take_turns_in_short_slices(network):
    client = await start_client(create_app(network.settings(background_answers=1)))
    try:
        watch = client.app[STORAGE].search = Watch(client.app[STORAGE].search)
        bodies = [_body(network) for _ in range(4)]
        acks = await asyncio.gather(*(client.post("/beckn/discover", data=b, headers=network.bap.sign(b))
                                      for b in bodies))
        assert [r.status for r in acks] == [200] * 4
        await network.bap_sink.wait_for(4)
        assert watch.most == 1
        assert watch.slices == [BACKGROUND_SLICE_S] * 4
    finally:
        await client.close()


async def test_more_lanes_let_answers_overlap(network):
    client = await start_client(create_app(network.settings(background_answers=4)))
    try:
        watch = client.app[STORAGE].search = Watch(client.app[STORAGE].search)
        bodies = [_body(network) for _ in range(4)]
        await asyncio.gather(*(client.post("/beckn/discover", data=b, headers=network.bap.sign(b)) for b in bodies))
        await network.bap_sink.wait_for(4)
        assert watch.most > 1
    finally:
        await client.close()


async def test_sync_discovers_and_acks_do_not_wait_for_a_busy_lane(network):
    client = await start_client(create_app(network.settings(background_answers=1)))
    gate = asyncio.Event()
    try:
        watch = client.app[STORAGE].search = Watch(client.app[STORAGE].search, gate)
        first = _body(network)
        assert (await client.post("/beckn/discover", data=first, headers=network.bap.sign(first))).status == 200
        while not watch.slices:                      # the first answer now holds the lane
            await asyncio.sleep(0.005)
        second = _body(network)
        resp = await client.post("/beckn/discover", data=second, headers=network.bap.sign(second))
        assert resp.status == 200                    # ACKed while the lane is busy
        sync = _body(network)
        resp = await client.request("GET", "/beckn/discover", data=sync, headers=network.bap.sign(sync))
        doc = orjson.loads(await resp.read())
        assert resp.status == 200 and doc["context"]["action"] == "on_discover", doc
        assert watch.slices == [BACKGROUND_SLICE_S, None]   # the synchronous search: default slices, no lane
        assert network.bap_sink.received == []       # both background answers still wait
        gate.set()
        await network.bap_sink.wait_for(2)
    finally:
        gate.set()
        await client.close()


async def _foreground(steps: int, log: list[str]) -> None:
    for i in range(steps):
        log.append(f"fg{i}")
        await asyncio.sleep(0)


async def test_a_background_step_waits_for_an_idle_loop():
    log: list[str] = []
    gate = IdleGate(defer_s=3600)

    async def background() -> None:
        await gate.wait()
        log.append("bg")

    await asyncio.gather(background(), _foreground(20, log))
    assert log[-1] == "bg"                 # behind every step of the busy request


async def test_a_busy_loop_cannot_starve_background_steps():
    log: list[str] = []
    gate = IdleGate(defer_s=0)

    async def background() -> None:
        for _ in range(3):
            await gate.wait()
            log.append("bg")

    await asyncio.gather(background(), _foreground(200, log))
    assert log.count("bg") == 3 and log[-1] != "bg"   # all three ran while the loop was busy


async def test_background_steps_go_one_per_idle_moment_in_arrival_order():
    order: list[int] = []
    gate = IdleGate(defer_s=3600)

    async def step(i: int) -> None:
        await gate.wait()
        order.append(i)

    await asyncio.gather(*(step(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]
