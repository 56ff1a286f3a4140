"""Application factory (aiohttp): shared resources under typed AppKeys, created and closed by
cleanup contexts in dependency order: HTTP client → registry → storage → services → background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import AsyncIterator, Callable

from aiohttp import web

from cds import gcpolicy
from cds.config import Settings
from cds.fanout import build_fanout  # fan-out (issue 6)
from cds.handlers.base import beckn_errors
from cds.metrics import Metrics, new_metrics
from cds.outbound import Outbound, Signer, make_session
from cds.redisconn import connect as connect_redis  # fan-out (issue 6)
from cds.registry import build_registry
from cds.ratelimit import build_rate_limiter
from cds.registry import RedisKeyCache
from cds.replay import MemoryReplayStore, RedisReplayStore
from cds.routes import setup_routes
from cds.services.discover import DiscoverService
from cds.services.ingest import IngestPipeline
from cds.services.publish import PublishService
from cds.storage_factory import build_storage
from cds.typedefs import CLOCK, DISCOVER, INGEST, METRICS, OUTBOUND, REGISTRY, REPLAY, SETTINGS, STORAGE, TASKS
from cds.typedefs import FANOUT, REDIS  # fan-out (issue 6)
from cds.typedefs import RATE_LIMIT
from indexer.ingest_log import IngestLog
from indexer.storage import Storage
from indexer.stream import IngestStream, StreamIngest
from indexer.worker import StreamWorker

log = logging.getLogger("cds.app")


def create_app(settings: Settings, *, storage: Storage | None = None, metrics: Metrics | None = None,
               clock: Callable[[], float] = time.time) -> web.Application:
    """Build the API app. `storage` may be injected (tests run the same app on both backends);
    `clock` is the service clock (TTL tests move it)."""
    app = web.Application(middlewares=[beckn_errors],
                          client_max_size=max(settings.max_publish_bytes, settings.max_discover_bytes) + 1024)
    app[SETTINGS] = settings
    app[METRICS] = metrics or new_metrics()
    app[TASKS] = set()
    app[REPLAY] = MemoryReplayStore()
    app[CLOCK] = clock
    app.cleanup_ctx.append(_http_and_registry)
    app.cleanup_ctx.append(_storage_ctx(storage))
    app.cleanup_ctx.append(_fanout_ctx)  # fan-out (issue 6): Redis client, pending store, circuit breaker
    app.cleanup_ctx.append(_shared_state_ctx)  # issue 5: replay store, key cache, rate limits (Redis if set)
    app.cleanup_ctx.append(_services)
    app.cleanup_ctx.append(_background)
    setup_routes(app, settings.base_path)
    return app


async def _http_and_registry(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    session = make_session(settings)
    app[OUTBOUND] = Outbound(session, Signer(settings), settings)
    # Registry lookups use their own session: the registry may legitimately be on a private
    # address, which the callback session refuses.
    import aiohttp

    reg_session = aiohttp.ClientSession()
    app[REGISTRY] = build_registry(settings, reg_session)
    app[REGISTRY].on_lookup = lambda result: app[METRICS].registry_lookups.labels(result).inc()
    yield
    await app[REGISTRY].close()
    await reg_session.close()
    await session.close()


def _storage_ctx(injected: Storage | None):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        storage = injected or build_storage(app[SETTINGS])
        if injected is None:
            await storage.open()
            gcpolicy.settle()  # the loaded index is long-lived: keep it out of full collections
        app[STORAGE] = storage
        yield
        if injected is None:
            await storage.close()
    return ctx


async def _fanout_ctx(app: web.Application) -> AsyncIterator[None]:
    """Fan-out (issue 6). The Redis client (None without CDS_REDIS_URL) is made once here and kept under
    REDIS for other shared state; the fan-out keeps pending requests and circuit state in it when present."""
    settings = app[SETTINGS]
    redis = connect_redis(settings)
    app[REDIS] = redis
    fanout = build_fanout(settings, registry=app[REGISTRY], storage=app[STORAGE], outbound=app[OUTBOUND],
                          metrics=app[METRICS], clock=app[CLOCK], redis=redis)
    await fanout.start_stores()
    app[FANOUT] = fanout
    yield
    await fanout.close()
    if redis is not None:
        await redis.aclose()


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings, metrics, storage = app[SETTINGS], app[METRICS], app[STORAGE]
    outbound = app[OUTBOUND]
    clock = app[CLOCK]
    app[DISCOVER] = DiscoverService(storage, settings, metrics, outbound, clock=clock, fanout=app[FANOUT])
    publish = PublishService(storage, settings, metrics, outbound, clock=clock)
    async with _ingest(app, publish) as ingest:     # durable before the ACK: local log or Redis stream (issue 5)
        app[INGEST] = ingest
        yield


@contextlib.asynccontextmanager
async def _ingest(app: web.Application, publish: PublishService) -> AsyncIterator[IngestPipeline | StreamIngest]:
    """Without Redis: the in-process pipeline over the local ingest log. With Redis: the stream, indexed by
    `cds indexer` workers, or by this process itself when the index is embedded (it cannot be shared with
    another process; CDS_INDEXER_IN_API=auto decides so)."""
    settings, redis = app[SETTINGS], app[REDIS]
    if redis is None:
        ingest_log = IngestLog(settings.data_path / "ingest")
        await ingest_log.open()
        pipeline = IngestPipeline(ingest_log, publish)
        try:
            yield pipeline
        finally:
            await pipeline.close()
            await ingest_log.close()
        return
    stream = IngestStream.from_settings(redis, settings)
    in_api = settings.indexer_in_api == "true" or (settings.indexer_in_api == "auto" and not settings.es_url)
    worker = StreamWorker(stream, publish, app[STORAGE], settings, app[METRICS]) if in_api else None
    ingest = StreamIngest(stream, app[METRICS], worker)
    await ingest.open()
    try:
        yield ingest
    finally:
        await ingest.close()


async def _shared_state_ctx(app: web.Application) -> AsyncIterator[None]:
    """Issue 5: with Redis, replay protection, the registry key cache and rate limits are shared by every
    replica; each store falls back to its process-local twin while Redis is unreachable."""
    redis = app[REDIS]
    if redis is not None:
        app[REPLAY] = RedisReplayStore(redis, fallback=app[REPLAY])
        app[REGISTRY].cache = RedisKeyCache(redis, fallback=app[REGISTRY].cache)
    app[RATE_LIMIT] = build_rate_limiter(app[SETTINGS], redis)
    yield


async def _background(app: web.Application) -> AsyncIterator[None]:
    tasks = [asyncio.ensure_future(app[INGEST].run()), asyncio.ensure_future(_purge_loop(app))]
    yield
    for t in tasks + list(app[TASKS]):
        t.cancel()
    for t in tasks + list(app[TASKS]):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t


async def _purge_loop(app: web.Application) -> None:
    """Expired catalogs and offers are filtered at query time; this also removes them."""
    settings, storage, metrics = app[SETTINGS], app[STORAGE], app[METRICS]
    while True:
        await asyncio.sleep(settings.purge_interval_s)
        try:
            st = await storage.purge_expired(app[CLOCK]())
            metrics.purged.labels("catalog").inc(st.catalogs)
            metrics.purged.labels("offer").inc(st.offers)
            gcpolicy.full_sweep()
        except Exception:  # noqa: BLE001 - keep sweeping; the next round may succeed
            log.exception("expiry purge failed")
