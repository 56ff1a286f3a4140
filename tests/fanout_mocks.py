"""Mock BPPs for the fan-out tests: real aiohttp servers with their own keys in the registry file, which
answer the CDS's discover in a chosen way and send their own signed on_discover back (or not).

Modes: "reply" (ACK, reply after `delay`; delay 0 replies *before* the ACK goes out), "silent" (ACK, never
reply), "5xx", "nack" (HTTP 200 with a NACK body), "hang" (never answers the HTTP call), "badsig" (reply
signed with a key the registry does not know for it), "othermsg" (reply under a fresh message id).
A "refused" BPP is just a registry record whose URL has no server behind it (`refused_participant`).
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
import uuid
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer
from nacl.signing import SigningKey

from tests.harness import Participant, iso, load_fixture
from tests.redis_server import free_port

ON_DISCOVER = "UBC_on_discover_ev-charging-on_discover.json"
DISCOVER = "UBC_discovery-within-boundary-with-connection-spec.json"
# The query of DISCOVER: CCS2 && maxPowerKW >= 50, within 10 km of this point.
QUERY_POINT = (77.59, 12.94)
QUERY_RADIUS_M = 10000.0


def catalog_for(bpp_id: str, *, shift: float = 0.0, far: bool = False, catalog_id: str | None = None) -> dict:
    """The fixture's catalog (2 CCS2 >= 50 kW items near QUERY_POINT, 1 Type2), owned by `bpp_id`; `shift`
    moves every station north by that many degrees; `far` moves them to Delhi (matching nothing)."""
    cat = copy.deepcopy(load_fixture(ON_DISCOVER)["message"]["catalogs"][0])
    cat["beckn:id"] = catalog_id or f"{bpp_id}-catalog"
    cat["beckn:bppId"] = bpp_id
    for item in cat["beckn:items"]:
        geo = item["beckn:itemAttributes"]["chargingStation"]["serviceLocation"]["geo"]
        lon, lat = geo["coordinates"]
        geo["coordinates"] = [77.2, 28.6] if far else [lon, round(lat + shift, 6)]
    return cat


# ---- an independent reading of what should match and in which order (no project code) ----------------

def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(a))


def expected_items(catalogs: list[dict]) -> list[tuple[str, str]]:
    """(bppId, item id) of the items DISCOVER must return from these catalogs, in reply order: nearest
    first by (distance, catalog id, bpp id, item id), then grouped by catalog in order of first appearance."""
    rows = []
    for cat in catalogs:
        for item in cat["beckn:items"]:
            a = item["beckn:itemAttributes"]
            lon, lat = a["chargingStation"]["serviceLocation"]["geo"]["coordinates"]
            d = haversine_m(QUERY_POINT[0], QUERY_POINT[1], lon, lat)
            if a["connectorType"] == "CCS2" and a["maxPowerKW"] >= 50 and d <= QUERY_RADIUS_M:
                rows.append((d, cat["beckn:id"], cat["beckn:bppId"], item["beckn:id"]))
    rows.sort()
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for _d, cid, bpp, iid in rows:
        groups.setdefault((bpp, cid), []).append((bpp, iid))
    return [x for g in groups.values() for x in g]


def reply_items(on_discover: dict) -> list[tuple[str, str]]:
    return [(c["beckn:bppId"], i["beckn:id"]) for c in on_discover["message"]["catalogs"] for i in c["beckn:items"]]


# ---- the mock BPP -------------------------------------------------------------------------------------

class MockBpp:
    def __init__(self, subscriber_id: str, mode: str = "reply", *, delay: float = 0.0,
                 catalogs: list[dict] | None = None, reply_to: str | None = None) -> None:
        self.subscriber_id = subscriber_id
        self.mode = mode
        self.delay = delay
        self.catalogs = [catalog_for(subscriber_id)] if catalogs is None else catalogs
        self.reply_to = reply_to               # base URL to reply to instead of the discover's bap_uri
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.reply_results: list[tuple[int, dict]] = []   # (HTTP status, body) of our on_discover POSTs
        self.reply_sent_at: list[float] = []
        self.replied = asyncio.Event()
        self.got_discover = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.port = free_port()
        self.participant = Participant(subscriber_id, "BPP", f"http://127.0.0.1:{self.port}/bpp")
        app = web.Application()
        app.router.add_post("/bpp/discover", self._discover)
        self.server = TestServer(app, host="127.0.0.1", port=self.port)
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> "MockBpp":
        await self.server.start_server()
        self.session = aiohttp.ClientSession()
        return self

    async def close(self) -> None:
        self._stop.set()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.session.close()
        await self.server.close()

    async def _discover(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((dict(request.headers), body))
        self.got_discover.set()
        doc = orjson.loads(body)
        if self.mode == "5xx":
            return web.Response(status=500, text="upstream exploded")
        if self.mode == "nack":
            return web.json_response({"message": {"ack": {"status": "NACK"}},
                                      "error": {"code": "BIZ_NOT_SERVED", "message": "not today"}})
        if self.mode == "hang":
            await self._stop.wait()
            return web.Response(status=503)
        if self.mode != "silent":
            if self.delay <= 0:
                await self.reply(doc)          # the reply lands before our ACK does
            else:
                task = asyncio.ensure_future(self._later(doc))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return web.json_response({"message": {"ack": {"status": "ACK"}}})

    async def _later(self, doc: dict) -> None:
        await asyncio.sleep(self.delay)
        await self.reply(doc)

    def on_discover_body(self, discover: dict, *, message_id: str | None = None) -> bytes:
        ctx = dict(discover["context"])
        camel = "bapUri" in ctx
        ctx.update({"action": "on_discover", "timestamp": iso(time.time()),
                    ("bppId" if camel else "bpp_id"): self.subscriber_id,
                    ("bppUri" if camel else "bpp_uri"): self.participant.url})
        if message_id is not None:
            ctx["messageId" if camel else "message_id"] = message_id
        return orjson.dumps({"context": ctx, "message": {"catalogs": self.catalogs}})

    async def reply(self, discover: dict) -> tuple[int, dict]:
        msg_id = str(uuid.uuid4()) if self.mode == "othermsg" else None
        body = self.on_discover_body(discover, message_id=msg_id)
        signer = self.participant
        if self.mode == "badsig":  # same subscriber and key id, but not the registered key
            signer = Participant(self.subscriber_id, "BPP", self.participant.url, key=SigningKey.generate(),
                                 key_id=self.participant.key_id)
        base = self.reply_to or discover["context"].get("bap_uri") or discover["context"]["bapUri"]
        self.reply_sent_at.append(time.time())
        async with self.session.post(f"{base}/on_discover", data=body, headers=signer.sign(body)) as resp:
            result = (resp.status, orjson.loads(await resp.read()))
        self.reply_results.append(result)
        self.replied.set()
        return result


def refused_participant(subscriber_id: str) -> Participant:
    """A registered BPP whose URL refuses connections (nothing listens on that port)."""
    return Participant(subscriber_id, "BPP", f"http://127.0.0.1:{free_port()}/bpp")


async def start_bpps(network: Any, specs: dict[str, dict]) -> dict[str, MockBpp]:
    """Start one MockBpp per spec (name -> MockBpp kwargs) and register them all."""
    bpps = {}
    for name, kw in specs.items():
        bpps[name] = await MockBpp(f"{name}.bpp.test", **kw).start()
        network.others.append(bpps[name].participant)
    network.write()
    return bpps


# ---- CDS side -----------------------------------------------------------------------------------------

async def start_cds(network: Any, *, clock: Any = None, **settings: Any):
    """A CDS on a known port whose CDS_SUBSCRIBER_URL is its own address (BPPs reply there)."""
    from aiohttp.test_utils import TestClient

    from cds.api.app import create_app

    port = free_port()
    s = network.settings(**{"subscriber_url": f"http://127.0.0.1:{port}/beckn", "fanout_timeout_ms": 1000,
                            **settings})
    app = create_app(s, clock=clock) if clock is not None else create_app(s)
    client = TestClient(TestServer(app, host="127.0.0.1", port=port))
    await client.start_server()
    return client


def discover_doc(network: Any, name: str = DISCOVER, **ctx: Any) -> dict:
    from tests.harness import fresh_context

    return fresh_context(load_fixture(name), **{"bap_id": network.bap.subscriber_id, "bap_uri": network.bap.url,
                                                **ctx})


async def publish_cached(network: Any, cds: Any) -> dict:
    """The network's own BPP publishes the UBC fixture catalog (a caching BPP: never a fan-out target).
    Returns the catalog as published."""
    from tests.harness import fresh_context

    p = network.bpp
    doc = fresh_context(load_fixture("UBC_catalog_publish_ev-charging-catalog-publish.json"),
                        bpp_id=p.subscriber_id, bpp_uri=p.url)
    for cat in doc["message"]["catalogs"]:
        cat["beckn:bppId"], cat["beckn:bppUri"] = p.subscriber_id, p.url
    body = orjson.dumps(doc)
    resp = await cds.post("/beckn/catalog/publish", data=body, headers=p.sign(body))
    assert resp.status == 200, await resp.text()
    await network.bpp_sink.wait_for(1)
    return doc["message"]["catalogs"][0]


async def metric(client: Any, line_prefix: str) -> float:
    """The value of the first /metrics sample starting with `line_prefix` (0 when absent)."""
    text = await (await client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
