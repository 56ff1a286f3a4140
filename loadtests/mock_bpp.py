"""Mock live (non-caching) BPPs for fan-out load scenarios: one aiohttp process, many signed BPP identities.

    python -m loadtests.mock_bpp --port 18090 --bpps 20 --delay-ms 20 --delay-ms-max 200 \
        --registry-out /tmp/mock-bpps.json [--cds-public-key B64]

Each BPP `i` lives at `{base}/bpp/{i}` (its registry `url`). On `POST {base}/bpp/{i}/discover` it
 1. verifies the BECKN-006 signature against `--cds-public-key` when given (401 NACK otherwise),
 2. ACKs at once, and
 3. after a delay drawn uniformly from [delay-ms, delay-ms-max], POSTs a signed `on_discover` to
    `{context.bap_uri}/on_discover` (the CDS, for a fan-out discover): the request's context with
    action `on_discover` and this BPP as `bpp_id`/`bpp_uri`, and one small UBC-shaped catalog whose
    connectors stand at the request's location (the first spatial geometry's first point), so that
    radius and route queries match and the CDS's re-filter keeps them.

`--registry-out` writes the BPPs' static registry records (merge them into the CDS's registry file);
keys are derived from `--seed`, so the same seed gives the same identities. Control endpoints for a runner:
`GET /_mock/stats` (counts) and `GET /_mock/replies` ({message_id: [[bpp_id, discover received at, reply sent
at], ...]} for the replies the CDS ACKed; time.time() values). A BPP's own latency is sent − received, so a
runner can compute the fan-out overhead = answer time at the BAP − the slowest BPP's own latency.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import hashlib
import random
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import msgspec
import nacl.signing
import orjson
from aiohttp import web

from cds.core.errors import BecknError
from cds.core.timeutil import rfc3339
from cds.keys import public_key_b64
from cds.trust.signing import parse_authorization, sign_request, verify_request

DOMAIN = "beckn.one:deg:ev-charging"
DEFAULT_POINT = (77.5946, 12.9716)   # Bengaluru, when a discover has no spatial constraint
MAX_BPPS = 1000
MAX_ITEMS = 100
MAX_BODY = 1 << 20
MAX_REPLIES_KEPT = 200_000
_ACK = orjson.dumps({"message": {"ack": {"status": "ACK"}}})


class MockBpp(msgspec.Struct, frozen=True):
    index: int
    subscriber_id: str
    key_id: str
    url: str
    seed_b64: str

    def signing_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(base64.b64decode(self.seed_b64))

    @property
    def public_key_b64(self) -> str:
        return public_key_b64(self.signing_key())


def mock_bpps(n: int, *, base_url: str, seed: int = 0) -> list[MockBpp]:
    """`n` deterministic BPP identities served under `base_url`."""
    if not 1 <= n <= MAX_BPPS:
        raise ValueError(f"n must be within 1..{MAX_BPPS}")
    out = []
    for i in range(n):
        raw = hashlib.sha256(f"ubc-mock-bpp:{seed}:{i}".encode()).digest()
        out.append(MockBpp(index=i, subscriber_id=f"mock-bpp-{i:03d}.ubc.example", key_id=f"mock-key-{i:03d}",
                           url=f"{base_url.rstrip('/')}/bpp/{i}", seed_b64=base64.b64encode(raw).decode()))
    return out


def registry_records(bpps: list[MockBpp], *, domain: str = DOMAIN) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc)
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # noqa: E731
    return [{"subscriber_id": b.subscriber_id, "key_id": b.key_id, "type": "BPP", "domain": domain, "url": b.url,
             "signing_public_key": b.public_key_b64, "status": "SUBSCRIBED", "valid_from": iso(now - timedelta(days=1)),
             "valid_until": iso(now + timedelta(days=365))} for b in bpps]


def base_catalog(items: int, seed: int = 0) -> dict[str, Any]:
    """One small catalog in the UBC publish shape (from the network generator), to be re-addressed per reply."""
    from cds.demo.generator import generate_network

    net = generate_network(max(items, 2), seed=seed, cpos=1)
    _, catalog = next(net.iter_catalogs())
    catalog = orjson.loads(orjson.dumps(catalog))   # the generator shares sub-objects: take a private copy
    kept = catalog["beckn:items"][:items]
    ids = {it["beckn:id"] for it in kept}
    catalog["beckn:items"] = kept
    offers = []
    for o in catalog.get("beckn:offers", []):
        named = [i for i in o.get("beckn:items", []) if i in ids]
        if named:
            offers.append({**o, "beckn:items": named})
    catalog["beckn:offers"] = offers
    return catalog


def query_point(message: Any) -> tuple[float, float]:
    """The first point of the first spatial geometry of a discover message (dialect A or B)."""
    body = message.get("intent", message) if isinstance(message, dict) else {}
    spatial = body.get("spatial") if isinstance(body, dict) else None
    if isinstance(spatial, dict):
        spatial = [spatial]
    for s in spatial or []:
        coords = (s.get("geometry") or {}).get("coordinates") if isinstance(s, dict) else None
        while isinstance(coords, list) and coords and isinstance(coords[0], list):
            coords = coords[0]
        if isinstance(coords, list) and len(coords) >= 2 and all(isinstance(c, (int, float)) for c in coords[:2]):
            return float(coords[0]), float(coords[1])
    return DEFAULT_POINT


def reply_catalog(template: dict[str, Any], bpp: MockBpp, point: tuple[float, float]) -> dict[str, Any]:
    cat = copy.deepcopy(template)
    cat["beckn:id"] = f"{bpp.subscriber_id}-live"
    cat["beckn:bppId"] = bpp.subscriber_id
    cat["beckn:bppUri"] = bpp.url
    for k, it in enumerate(cat["beckn:items"]):
        # Spread the connectors a few metres apart around the query point.
        geo = it["beckn:itemAttributes"]["chargingStation"]["serviceLocation"]["geo"]
        geo["coordinates"] = [round(point[0] + 0.00005 * k, 6), round(point[1], 6)]
    return cat


class MockBppServer:
    def __init__(self, bpps: list[MockBpp], *, delay_ms: tuple[float, float] = (0.0, 0.0), items: int = 5,
                 cds_public_key: str | None = None, seed: int = 0) -> None:
        if not 1 <= items <= MAX_ITEMS:
            raise ValueError(f"items must be within 1..{MAX_ITEMS}")
        lo, hi = delay_ms
        if not 0 <= lo <= hi <= 600_000:
            raise ValueError("delay_ms must be 0 <= lo <= hi <= 600000")
        self.bpps = bpps
        self.delay_ms = (lo, hi)
        self.cds_public_key = cds_public_key
        self.template = base_catalog(items, seed)
        self.rng = random.Random(seed)
        self.stats: Counter[str] = Counter()
        self.replies: dict[str, list[tuple[str, float, float]]] = {}
        self.tasks: set[asyncio.Task] = set()
        self.session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/bpp/{i}/discover", self.discover)
        app.router.add_get("/_mock/stats", self.get_stats)
        app.router.add_get("/_mock/replies", self.get_replies)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, app: web.Application) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def _close(self, app: web.Application) -> None:
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session:
            await self.session.close()

    def _nack(self, status: int, code: str, message: str) -> web.Response:
        self.stats[f"nack_{status}"] += 1
        return web.Response(status=status, content_type="application/json", body=orjson.dumps(
            {"message": {"ack": {"status": "NACK"}}, "error": {"code": code, "message": message}}))

    async def discover(self, request: web.Request) -> web.Response:
        received = time.time()
        self.stats["discover"] += 1
        try:
            bpp = self.bpps[int(request.match_info["i"])]
        except (ValueError, IndexError):
            return self._nack(404, "CTX_INVALID_FIELD", "no such mock BPP")
        body = await request.read()
        if self.cds_public_key:
            try:
                verify_request(parse_authorization(request.headers.get("Authorization")), body, self.cds_public_key,
                               digest_header=request.headers.get("Digest"))
            except BecknError as e:
                return self._nack(401, e.code, e.message)
        try:
            doc = orjson.loads(body)
            ctx = doc["context"]
            callback = ctx["bap_uri"].rstrip("/")
            mid = str(ctx["message_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return self._nack(400, "CTX_MISSING_FIELD", "discover needs a JSON context with bap_uri and message_id")
        delay = self.rng.uniform(*self.delay_ms) / 1000
        task = asyncio.ensure_future(self._reply(bpp, ctx, doc.get("message") or {}, callback, mid, delay, received))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.Response(body=_ACK, content_type="application/json")

    async def _reply(self, bpp: MockBpp, ctx: dict, message: Any, callback: str, mid: str, delay: float,
                     received: float) -> None:
        await asyncio.sleep(delay)
        now = time.time()
        reply_ctx = {**ctx, "action": "on_discover", "bpp_id": bpp.subscriber_id, "bpp_uri": bpp.url,
                     "timestamp": rfc3339(now)}
        catalog = reply_catalog(self.template, bpp, query_point(message))
        body = orjson.dumps({"context": reply_ctx, "message": {"catalogs": [catalog]}})
        headers = {"Content-Type": "application/json",
                   "Authorization": sign_request(body, subscriber_id=bpp.subscriber_id, key_id=bpp.key_id,
                                                 key=bpp.signing_key(), now=now)}
        assert self.session is not None
        sent = time.time()   # "the BPP answered": the moment its reply leaves
        try:
            async with self.session.post(f"{callback}/on_discover", data=body, headers=headers) as r:
                await r.read()
                self.stats[f"reply_{r.status}"] += 1
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            self.stats[f"reply_error_{type(e).__name__}"] += 1
            return
        if r.status == 200 and len(self.replies) < MAX_REPLIES_KEPT:
            self.replies.setdefault(mid, []).append((bpp.subscriber_id, received, sent))

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.stats), content_type="application/json")

    async def get_replies(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.replies), content_type="application/json")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtests.mock_bpp", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18090)
    p.add_argument("--base-url", default=None, help="public base URL of this process (default http://HOST:PORT)")
    p.add_argument("--bpps", type=int, default=20)
    p.add_argument("--items", type=int, default=5, help="connectors in each reply")
    p.add_argument("--delay-ms", type=float, default=50.0, help="reply delay (lower bound)")
    p.add_argument("--delay-ms-max", type=float, default=None, help="reply delay upper bound (default = --delay-ms)")
    p.add_argument("--cds-public-key", default=None, help="verify inbound discovers against this key")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--registry-out", default=None, help="write the BPPs' registry records here (JSON array)")
    a = p.parse_args(argv)
    base = a.base_url or f"http://{a.host}:{a.port}"
    try:
        bpps = mock_bpps(a.bpps, base_url=base, seed=a.seed)
        server = MockBppServer(bpps, delay_ms=(a.delay_ms, a.delay_ms if a.delay_ms_max is None else a.delay_ms_max),
                               items=a.items, cds_public_key=a.cds_public_key, seed=a.seed)
    except ValueError as e:
        p.error(str(e))
    if a.registry_out:
        with open(a.registry_out, "wb") as f:
            f.write(orjson.dumps(registry_records(bpps), option=orjson.OPT_INDENT_2))
    web.run_app(server.app(), host=a.host, port=a.port, print=None, access_log=None, shutdown_timeout=2)


if __name__ == "__main__":
    main()
