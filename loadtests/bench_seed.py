"""Seeding a running CDS over HTTP (every catalog of the network as a signed publish) and the publish →
searchable probes (re-publish one catalog with one new item; poll a signed sync discover for it)."""

from __future__ import annotations

import asyncio
import heapq
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson

from cds.core.timeutil import rfc3339
from cds.keys import load_private_key
from cds.trust.signing import sign_request
from loadtests.bench_procs import http_json
from loadtests.bench_report import Latency, Probe, Run
from cds.demo.generator import Network

SEED_CONCURRENCY = 4
PUBLISH_POOL = 16                      # smallest publish requests re-sent by the publish scenario
_CTX_SPLIT = b',"message":{"catalogs":['
DOMAIN = "beckn.one:deg:ev-charging"


def restamp(body: bytes, callback_uri: str, now: float) -> tuple[str, bytes]:
    """A generator publish body with fresh ids, timestamp and bpp_uri (the catalogs' bytes are reused)."""
    cut = body.index(_CTX_SPLIT)
    ctx = orjson.loads(body[len(b'{"context":'):cut])
    mid = str(uuid.uuid4())
    ctx.update(message_id=mid, transaction_id=str(uuid.uuid4()), timestamp=rfc3339(now), bpp_uri=callback_uri)
    return mid, b'{"context":' + orjson.dumps(ctx) + body[cut:]


def signed_headers(body: bytes, who: dict[str, Any], now: float) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "Authorization": sign_request(body, subscriber_id=who["subscriber_id"], key_id=who["key_id"],
                                          key=load_private_key(who["seed_b64"]), now=now)}


# ---------------------------------------------------------------- seeding and publish → searchable


class Seeder:
    def __init__(self, run: Run, net: Network, work: Path, *, cds: str, sink: str, probes: int, smoke: bool) -> None:
        self.run, self.net, self.work, self.cds, self.sink = run, net, work, cds, sink
        self.probes, self.smoke = probes, smoke
        self.bpps = {b.subscriber_id: msgspec.to_builtins(b) for b in net.bpps}
        self.bap = msgspec.to_builtins(net.bap)
        self.probe_catalogs: list[tuple[str, bytes]] = []   # (bpp id, one catalog's JSON)
        self.smallest: list[tuple[int, int, bytes]] = []    # max-heap (-size, i, body) of the smallest requests
        self.probe_acks: dict[str, float] = {}               # probe publish message id -> ACK time

    async def seed(self, session: aiohttp.ClientSession) -> None:
        sd = self.run.seeding
        sem = asyncio.Semaphore(SEED_CONCURRENCY)
        acks: list[float] = []
        tasks: set[asyncio.Task] = set()
        # Probe catalogs spread over the whole network (CPOs come biggest first).
        stride = max(1, sum(b.catalogs for b in self.net.bpps) // max(1, self.probes))
        t0 = time.time()
        last_ack = t0

        async def send(bpp_id: str, body: bytes) -> None:
            nonlocal last_ack
            try:
                t = time.time()
                _, data = restamp(body, f"{self.sink}/bpp", t)
                async with session.post(f"{self.cds}/catalog/publish", data=data,
                                        headers=signed_headers(data, self.bpps[bpp_id], t)) as r:
                    reply = await r.read()
                    if r.status != 200 or b'"ACK"' not in reply:
                        sd.nacks += 1
                        self.run.errors.append(f"seed publish from {bpp_id}: HTTP {r.status} {reply[:200]!r}")
                last_ack = time.time()
                acks.append((last_ack - t) * 1000)
            finally:
                sem.release()

        for i, (bpp, body) in enumerate(self.net.publish_payload_bytes()):
            sd.publishes += 1
            sd.bytes += len(body)
            if i % stride == 0 and len(self.probe_catalogs) < self.probes:
                first = orjson.loads(body[body.index(_CTX_SPLIT) + len(_CTX_SPLIT) - 1:-2])[0]
                self.probe_catalogs.append((bpp.subscriber_id, orjson.dumps(first)))
            heapq.heappush(self.smallest, (-len(body), i, body))
            if len(self.smallest) > PUBLISH_POOL:
                heapq.heappop(self.smallest)
            await sem.acquire()
            task = asyncio.ensure_future(send(bpp.subscriber_id, body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        sd.acked_s = last_ack - t0
        sd.ack_latency = Latency.of(acks)
        await self._wait_callbacks(sd.publishes, timeout=max(120.0, self.net.connectors / 300))
        sd.indexed_s = time.time() - t0
        sd.callbacks_redelivered = http_json(f"{self.sink}/_sink/stats").get("redelivered", 0)
        res = http_json(f"{self.sink}/_sink/results")
        sd.catalogs_accepted = res["statuses"].get("ACCEPTED", 0)
        sd.catalogs_rejected = res["statuses"].get("REJECTED", 0)
        sd.rejections = res["rejections"]
        if sd.catalogs_rejected:
            self.run.errors.append(f"{sd.catalogs_rejected} seeded catalogs were REJECTED, e.g. {sd.rejections[:2]}")
        self._write_publish_pool()

    async def _wait_callbacks(self, expected: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        got = 0
        while time.monotonic() < deadline:
            got = http_json(f"{self.sink}/_sink/stats")["distinct"].get("on_catalog_publish", 0)
            if got >= expected:
                return
            await asyncio.sleep(0.1)
        self.run.errors.append(f"only {got} of {expected} on_catalog_publish callbacks within {timeout:.0f} s")

    def _write_publish_pool(self) -> None:
        d = self.work / "publish_load"
        d.mkdir(exist_ok=True)
        for _, i, body in self.smallest:
            (d / f"{i:05d}.json").write_bytes(body)

    async def probe_all(self, session: aiohttp.ClientSession) -> None:
        before = http_json(f"{self.sink}/_sink/stats")["distinct"].get("on_catalog_publish", 0)
        for bpp_id, cat_json in self.probe_catalogs:
            self.run.probes.append(await self._probe(session, bpp_id, cat_json))
        await self._wait_callbacks(before + len(self.probe_catalogs), timeout=30)
        times = http_json(f"{self.sink}/_sink/times/on_catalog_publish")
        for p, (mid, acked) in zip(self.run.probes, self.probe_acks.items()):
            if mid in times:
                p.callback_ms = (times[mid] - acked) * 1000

    async def _probe(self, session: aiohttp.ClientSession, bpp_id: str, cat_json: bytes) -> Probe:
        cat = orjson.loads(cat_json)
        probe_id = f"bench-probe-{uuid.uuid4().hex}"
        cat["beckn:items"].append({**cat["beckn:items"][0], "beckn:id": probe_id})
        t = time.time()
        mid = str(uuid.uuid4())
        ctx = {"version": "2.0.0", "action": "catalog_publish", "domain": DOMAIN,
               "timestamp": rfc3339(t), "message_id": mid, "transaction_id": str(uuid.uuid4()),
               "bpp_id": bpp_id, "bpp_uri": f"{self.sink}/bpp", "ttl": "PT30S"}
        body = orjson.dumps({"context": ctx, "message": {"catalogs": [cat]}})
        async with session.post(f"{self.cds}/catalog/publish", data=body,
                                headers=signed_headers(body, self.bpps[bpp_id], t)) as r:
            reply = await r.read()
        acked = time.time()
        self.probe_acks[mid] = acked
        items = len(cat["beckn:items"])
        if r.status != 200:
            self.run.errors.append(f"probe publish: HTTP {r.status} {reply[:200]!r}")
            return Probe(items=items, ack_ms=-1, searchable_ms=None, callback_ms=None)
        expr = f"$[?(@.beckn:id == '{probe_id}')]"
        deadline = acked + (10 if self.smoke else 30)
        while time.time() < deadline:
            q = time.time()
            qctx = {"version": "2.0.0", "action": "discover", "domain": DOMAIN,
                    "bap_id": self.bap["subscriber_id"], "bap_uri": f"{self.sink}/bap", "ttl": "PT30S",
                    "transaction_id": str(uuid.uuid4()), "message_id": str(uuid.uuid4()), "timestamp": rfc3339(q)}
            qbody = orjson.dumps({"context": qctx, "message": {"filters": {"type": "jsonpath", "expression": expr}}})
            async with session.get(f"{self.cds}/discover", data=qbody, headers=signed_headers(qbody, self.bap, q)) as r:
                answer = await r.read()
            if r.status != 200:
                self.run.errors.append(f"probe discover: HTTP {r.status} {answer[:200]!r}")
                break
            if probe_id.encode() in answer:
                return Probe(items=items, ack_ms=(acked - t) * 1000, searchable_ms=(time.time() - acked) * 1000,
                             callback_ms=None)
            await asyncio.sleep(0.005)
        self.run.errors.append(f"probe item {probe_id} of {bpp_id} never became searchable")
        return Probe(items=items, ack_ms=(acked - t) * 1000, searchable_ms=None, callback_ms=None)


def index_items(cds_root: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{cds_root}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("cds_index_items "):
                    return int(float(line.split()[1]))
    except OSError:
        pass
    return None
