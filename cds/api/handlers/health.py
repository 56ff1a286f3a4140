"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import orjson
from aiohttp import web

from cds.api.appkeys import INGEST, METRICS, STORAGE
from cds.services.gauges import refresh_index_gauges


# what the operator can do about "not ready" (storage.ready() only answers yes or no)
NOT_READY_HINTS = {
    "elasticsearch": "Elasticsearch is unreachable or its indices are missing: check CDS_ES_URL and the cluster, "
                     "and create the indices with `cds index init`",
}


async def live(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    storage = request.app[STORAGE]
    try:
        ok = await storage.ready()
    except Exception:  # noqa: BLE001 - a failing backend means "not ready", not a 500
        ok = False
    checks = {"storage": ok, "backend": storage.name}
    doc: dict = {"status": "ready" if ok else "unavailable", "checks": checks}
    if not ok and storage.name in NOT_READY_HINTS:
        doc["hint"] = NOT_READY_HINTS[storage.name]
    return web.Response(status=200 if ok else 503, body=orjson.dumps(doc), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    try:
        await refresh_index_gauges(m, request.app[STORAGE], request.app[INGEST])
    except Exception:  # noqa: BLE001 - metrics must render even when the backend is down
        pass
    body, ctype = m.render()
    return web.Response(body=body, headers={"Content-Type": ctype})
