"""The `cds indexer` process: one `StreamWorker` with its own Redis client, index, signed outbound client
and metrics, stopped by SIGTERM/SIGINT (finishing what it read and handing its partitions back), plus a
small HTTP endpoint for the pod: /metrics, /health/live, /health/ready (index and Redis reachable)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import TYPE_CHECKING

from cds import gcpolicy
from cds.redisstate import REDIS_ERRORS
from indexer.ingest.apply import CatalogIndexer
from indexer.ingest.stream import IngestStream
from indexer.ingest.waiting import pause
from indexer.ingest.worker import READY_TIMEOUT_S, StreamWorker

if TYPE_CHECKING:
    from cds.config import Settings
    from cds.metrics import Metrics
    from indexer.storage import Storage

log = logging.getLogger("cds.indexer")

GC_YOUNG_THRESHOLD = 20_000     # allocations between young collections (the default is 700)


async def run_indexer(settings: "Settings", stop: asyncio.Event | None = None, *, storage: "Storage | None" = None,
                      purge: bool = False, init_indices: bool = True) -> int:
    """Run one worker until SIGTERM/SIGINT (or `stop`); 0 on a clean stop, 2 on a startup error.
    `storage`: an index made by the caller (the ingest process of `cds serve --workers N` passes the
    embedded writer whose log the serving workers follow); `purge`: also run the expiry sweep (that
    process is the index's only writer); `init_indices`: create/migrate Elasticsearch indices at start (not
    for `cds serve`, which leaves that to `cds index init` as it always has)."""
    from aiohttp import ClientSession

    from cds.metrics import new_metrics
    from cds.trust.outbound import Outbound, Signer, make_session
    from cds.redisconn import connect
    from indexer.factory import build_storage

    redis = connect(settings)
    if redis is None:
        log.error("cds indexer needs CDS_REDIS_URL")
        return 2
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    storage = storage or build_storage(settings)
    if not getattr(storage, "holds_documents", True):
        # Everything this process allocates is short-lived and acyclic (publishes in flight, their documents):
        # young collections that find nothing and full ones walking the entries in flight were a fifth
        # of the CPU of decoding and normalising (docs/decisions.md §P "Elasticsearch documents").
        gc.set_threshold(GC_YOUNG_THRESHOLD)
        gcpolicy.settle()   # what the process keeps (modules, clients) leaves the full collections once
    try:
        await storage.open()
    except RuntimeError as e:       # e.g. the embedded index is locked by `cds serve`
        log.error("cannot open the index: %s (with the embedded index, `cds serve` indexes the stream itself; "
                  "a separate `cds indexer` needs CDS_ES_URL or a data directory of its own)", e)
        await redis.aclose()
        return 2
    init = asyncio.ensure_future(_init_indices(storage, stop) if init_indices else asyncio.sleep(0))
    metrics = new_metrics()
    session: ClientSession = make_session(settings)
    service = CatalogIndexer(storage, settings, metrics, Outbound(session, Signer(settings), settings))
    worker = StreamWorker(IngestStream.from_settings(redis, settings), service, storage, settings, metrics)
    runner = await _serve_probes(settings, worker, storage, metrics) if settings.indexer_port else None
    sweeper = asyncio.ensure_future(_purge_loop(settings, storage, metrics, stop)) if purge else None
    log.info("indexer %s started (storage: %s)", worker.name, storage.name)
    try:
        await worker.run(stop)
    finally:
        init.cancel()
        if sweeper is not None:
            sweeper.cancel()
        if runner is not None:
            await runner.cleanup()
        await session.close()
        await storage.close()
        await redis.aclose()
    log.info("indexer %s stopped", worker.name)
    return 0


async def _purge_loop(settings: "Settings", storage: "Storage", metrics: "Metrics", stop: asyncio.Event) -> None:
    import time

    from indexer.purge import sweep_expired

    while not stop.is_set():
        await pause(stop, settings.purge_interval_s)
        if not stop.is_set():
            await sweep_expired(storage, metrics, time.time())


async def _init_indices(storage: "Storage", stop: asyncio.Event) -> None:
    """The indexer owns the index: create/migrate it (Elasticsearch) at start, retrying while unreachable."""
    init = getattr(storage, "init_indices", None)
    delay = 0.5
    while init is not None and not stop.is_set():
        try:
            log.info("index: %s", await init())
            return
        except Exception as e:  # noqa: BLE001 - the index may come up after us
            log.warning("cannot initialise the index yet (%s); retrying", e)
            await pause(stop, delay)
            delay = min(delay * 2, 30.0)


async def _serve_probes(settings: "Settings", worker: StreamWorker, storage: "Storage", metrics: "Metrics"):
    """/metrics, /health/live and /health/ready (index and Redis reachable) for the worker's pod."""
    from aiohttp import web

    async def live(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "worker": worker.name})

    async def ready(_: web.Request) -> web.Response:
        checks = {"storage": await worker.index_ready(), "redis": False}
        with contextlib.suppress(*REDIS_ERRORS):
            async with asyncio.timeout(READY_TIMEOUT_S):
                checks["redis"] = bool(await worker.redis.ping())
        ok = all(checks.values())
        return web.json_response({"status": "ready" if ok else "unavailable", "checks": checks},
                                 status=200 if ok else 503)

    async def metrics_view(_: web.Request) -> web.Response:
        with contextlib.suppress(*REDIS_ERRORS):
            b = await worker.stream.backlog()
            metrics.ingest_pending.set(b.entries)
            metrics.ingest_backlog_bytes.set(b.bytes)
            metrics.ingest_stream_pending.set(b.pending)
            metrics.ingest_consumer_lag.set(b.lag)
            metrics.ingest_dead_letters.set(b.dead)
        body, ctype = metrics.render()
        return web.Response(body=body, headers={"Content-Type": ctype})

    app = web.Application()
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.indexer_host, settings.indexer_port).start()
    return runner
