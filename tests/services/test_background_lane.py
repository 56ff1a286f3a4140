"""ACKs first (docs/decisions.md §P): discovers answered after their ACK compute in a background lane, at most
CDS_BACKGROUND_ANSWERS at a time and in short search slices, while synchronous discovers and new ACKs do not
wait for that lane."""

from __future__ import annotations

import asyncio
import socket

import orjson

from cds.api.app import create_app
from cds.api.appkeys import STORAGE
from cds.core import budget
from cds.services.discover import BACKGROUND_SLICE_S
from cds.services.idle import after_io
from tests.harness import fresh_context, load_fixture, start_client
from tests.stream_support import wait_until

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



async def _order_after_a_request_arrives(pause) -> list[str]:
    """A request's bytes arrive while a background step runs; what runs first once the step yields?"""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    order: list[str] = []
    loop.add_reader(a, lambda: (a.recv(100), order.append("request read")))
    try:
        await asyncio.sleep(0.01)            # the reader is registered with the selector
        b.send(b"x")                         # arrives during the "step"
        await pause()
        order.append("background resumed")
        await asyncio.sleep(0.01)
    finally:
        loop.remove_reader(a)
        a.close()
        b.close()
    return order


async def test_a_background_step_resumes_behind_the_requests_that_arrived():
    assert await _order_after_a_request_arrives(after_io) == ["request read", "background resumed"]
    # what it replaces: asyncio.sleep(0) resumes the step first
    assert await _order_after_a_request_arrives(lambda: asyncio.sleep(0)) == ["background resumed", "request read"]


async def test_posts_beyond_the_pending_bound_are_refused_and_the_room_comes_back(network):
    """CDS_MAX_PENDING_ANSWERS: an ACKed discover holds room until its answer is computed; one more is a 503
    NET_OVERLOADED with Retry-After (the synchronous path is not affected), and a replay gives its room back."""
    client = await start_client(create_app(network.settings(background_answers=1, max_pending_answers=1)))
    gate = asyncio.Event()
    try:
        watch = client.app[STORAGE].search = Watch(client.app[STORAGE].search, gate)
        first = _body(network)
        assert (await client.post("/beckn/discover", data=first, headers=network.bap.sign(first))).status == 200
        second = _body(network)
        resp = await client.post("/beckn/discover", data=second, headers=network.bap.sign(second))
        doc = orjson.loads(await resp.read())
        assert resp.status == 503 and doc["error"]["code"] == "NET_OVERLOADED", doc
        assert doc["message"]["ack"]["status"] == "NACK" and int(resp.headers["Retry-After"]) >= 1
        sync = _body(network)
        resp = await client.request("GET", "/beckn/discover", data=sync, headers=network.bap.sign(sync))
        assert resp.status == 200
        gate.set()
        await network.bap_sink.wait_for(1)
        # the room is back once the answer is computed: the refused request, sent again, is answered
        resp = await client.post("/beckn/discover", data=second, headers=network.bap.sign(second))
        assert resp.status == 200
        await network.bap_sink.wait_for(2)
        # a replay is ACKed (§11) without a second answer, and leaves no room taken behind it
        assert (await client.post("/beckn/discover", data=first, headers=network.bap.sign(first))).status == 200
        third = _body(network)

        async def third_accepted() -> bool:      # the replay's check may still be running
            resp = await client.post("/beckn/discover", data=third, headers=network.bap.sign(third))
            return resp.status == 200

        await wait_until(third_accepted, timeout=5.0, what="room for an answer once the replay is checked")
        await network.bap_sink.wait_for(3)
        assert len(watch.slices) == 4            # first, second, third in the background; one synchronous
    finally:
        gate.set()
        await client.close()
