"""Callback sink of the load test: stands in for the BAP (on_discover) and the BPPs (on_catalog_publish).

    python -m loadtests.callback_sink --port 18081

`POST /{role}/{action}` ACKs and records (message_id → receipt time.time()) per action; the runner reads
them back to measure ACK → on_discover and publish → on_catalog_publish. Only the Authorization header's
presence is checked (verifying the CDS signature would put the sink's CPU on the critical path of the very
latency it measures; the protocol tests verify callback signatures).

Control endpoints (runner only): `GET /_sink/stats` (deliveries per action, and `distinct` message ids per
action: a callback retried by the CDS counts once there), `GET /_sink/times/{action}` ({message_id: t}),
`GET /_sink/results` (on_catalog_publish catalog results: {status: count} and the first few rejections),
`POST /_sink/reset`."""

from __future__ import annotations

import argparse
import time
from collections import Counter

import orjson
from aiohttp import web

_ACK = orjson.dumps({"message": {"ack": {"status": "ACK"}}})
MAX_RECORDED = 2_000_000  # per action; beyond it only counts grow (bounded memory on long runs)
MAX_REJECTIONS_KEPT = 20


class Sink:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.times: dict[str, dict[str, float]] = {}
        self.counts: Counter[str] = Counter()
        self.unsigned = 0
        self.bad_bodies = 0
        self.redelivered = 0
        self.results: Counter[str] = Counter()
        self.rejections: list[dict] = []

    async def receive(self, request: web.Request) -> web.Response:
        t = time.time()
        action = request.match_info["action"]
        body = await request.read()
        self.counts[action] += 1
        if not request.headers.get("Authorization", "").strip():
            self.unsigned += 1
        try:
            doc = orjson.loads(body)
            mid = doc["context"]["message_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.bad_bodies += 1
            return web.Response(body=_ACK, content_type="application/json")
        seen = self.times.setdefault(action, {})
        if str(mid) in seen:               # a redelivery (the CDS retried): the first receipt counts
            self.redelivered += 1
            return web.Response(body=_ACK, content_type="application/json")
        if len(seen) < MAX_RECORDED:
            seen[str(mid)] = t
        if action == "on_catalog_publish":
            for r in (doc.get("message") or {}).get("results") or []:
                status = str(r.get("status"))
                self.results[status] += 1
                if status == "REJECTED" and len(self.rejections) < MAX_REJECTIONS_KEPT:
                    self.rejections.append(r)
        return web.Response(body=_ACK, content_type="application/json")

    async def stats(self, request: web.Request) -> web.Response:
        distinct = {action: len(seen) for action, seen in self.times.items()}
        return web.Response(body=orjson.dumps({"counts": self.counts, "distinct": distinct, "redelivered": self.redelivered,
                                               "unsigned": self.unsigned, "bad_bodies": self.bad_bodies}), content_type="application/json")

    async def times_of(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.times.get(request.match_info["action"], {})),
                            content_type="application/json")

    async def catalog_results(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"statuses": self.results, "rejections": self.rejections}),
                            content_type="application/json")

    async def do_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(body=b"{}", content_type="application/json")


def create_app() -> web.Application:
    sink = Sink()
    app = web.Application(client_max_size=64 << 20)
    app.router.add_get("/_sink/stats", sink.stats)
    app.router.add_get("/_sink/times/{action}", sink.times_of)
    app.router.add_get("/_sink/results", sink.catalog_results)
    app.router.add_post("/_sink/reset", sink.do_reset)
    app.router.add_post("/{role}/{action}", sink.receive)
    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtests.callback_sink", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18081)
    a = p.parse_args(argv)
    web.run_app(create_app(), host=a.host, port=a.port, print=None, access_log=None, shutdown_timeout=2)


if __name__ == "__main__":
    main()
