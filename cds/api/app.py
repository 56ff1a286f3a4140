"""Application factory (aiohttp): shared resources under typed AppKeys, each made and closed by its own
cleanup context, in dependency order: Redis → HTTP client → registry → storage → shared state → fan-out →
ingest → services → background jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from cds import gcpolicy
from cds.api.appkeys import (CLOCK, CONSOLE, DISCOVER, FANOUT, INGEST, METRICS, OUTBOUND, PUBLISH, RATE_LIMIT, REDIS,
                             REGISTRY, REPLAY, SETTINGS, SHARED_KEY_CACHE, SPOOL_DIR, STORAGE, TASKS,
                             WORKER)
from cds.api.handlers.base import beckn_errors
from cds.api.console.routes import setup_console
from cds.api.routes import setup_routes
from cds.config import Settings
from cds.fanout.engine import build_fanout
from cds.metrics import Metrics, new_metrics
from cds.redisconn import connect as connect_redis
from cds.services.console import ConsoleService
from cds.services.discover import DiscoverService
from cds.services.publish import PublishService
from cds.trust.outbound import Outbound, Signer, make_session
from cds.trust.ratelimit import build_rate_limiter
from cds.trust.key_cache import RedisKeyCache
from cds.trust.registry_factory import build_registry
from cds.trust.replay import MemoryReplayStore, RedisReplayStore
from indexer.embedded.follower import FollowerStorage
from indexer.factory import build_storage
from indexer.purge import sweep_expired
from indexer.ingest.apply import CatalogIndexer
from indexer.ingest.local import IngestPipeline
from indexer.ingest.log import IngestLog
from indexer.ingest.stream import IngestStream, StreamIngest
from indexer.ingest.worker import StreamWorker
from indexer.storage import Storage

log = logging.getLogger("cds.app")


def create_app(settings: Settings, *, storage: Storage | None = None, metrics: Metrics | None = None,
               clock: Callable[[], float] = time.time, worker: bool = False,
               machine_redis: bool = False) -> web.Application:
    """Build the API app. `storage` may be injected (tests run the same app on both backends);
    `clock` is the service clock (TTL tests move it). `worker`: one serving worker of `cds serve`, any worker
    count (docs/decisions.md §P; without it, the one process of `cds serve --single-process`): Redis is
    configured (the supervisor starts a local one when needed), the ingest process indexes, and an embedded
    index is a read-only follower of the ingest process's log.
    `machine_redis`: that Redis is the supervisor's private one; registry keys are then cached in each worker's
    memory (a Redis round trip per request would cost more than it saves: the workers share a machine)."""
    app = web.Application(middlewares=[beckn_errors],
                          client_max_size=max(settings.max_publish_bytes, settings.max_discover_bytes) + 1024)
    app[SETTINGS] = settings
    app[METRICS] = metrics or new_metrics()
    app[TASKS] = set()
    app[CLOCK] = clock
    app[WORKER] = worker
    app[SHARED_KEY_CACHE] = not machine_redis
    # Spool only where the consumer shares this data directory (docs/decisions.md §P, "Spooled publishes").
    app[SPOOL_DIR] = settings.data_path / "spool" if machine_redis or not settings.redis_url else None
    if worker:
        app.on_response_prepare.append(_worker_header)
    # storage first: a data directory held by another process fails the start before any session is opened
    app.cleanup_ctx.extend([_storage_ctx(storage), _redis_ctx, _outbound_ctx, _registry_ctx, _shared_state_ctx,
                            _fanout_ctx, _ingest_ctx, _services_ctx, _background_ctx])
    setup_routes(app, settings.base_path)
    setup_console(app)
    return app


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """One client for every user of Redis (None without CDS_REDIS_URL)."""
    redis = connect_redis(app[SETTINGS])
    app[REDIS] = redis
    yield
    if redis is not None:
        await redis.aclose()


async def _outbound_ctx(app: web.Application) -> AsyncIterator[None]:
    """Signed calls to apps and BPPs (callbacks, fan-out), over a session that refuses private addresses."""
    settings = app[SETTINGS]
    session = make_session(settings)
    app[OUTBOUND] = Outbound(session, Signer(settings), settings)
    yield
    await session.close()


async def _registry_ctx(app: web.Application) -> AsyncIterator[None]:
    # Its own session: the registry may legitimately be on a private address, which the callback session refuses.
    session = aiohttp.ClientSession()
    registry = build_registry(app[SETTINGS], session)
    lookups = app[METRICS].registry_lookups
    registry.on_lookup = lambda result: lookups.deferred(result).inc()
    app[REGISTRY] = registry
    yield
    await registry.close()
    await session.close()


_PID = str(os.getpid())


async def _worker_header(request: web.Request, response: web.StreamResponse) -> None:
    """Which worker answered (operators and tests tell the processes behind one port apart)."""
    response.headers["X-CDS-Worker"] = _PID


def _storage_ctx(injected: Storage | None):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        if injected is None and app[WORKER] and not settings.es_url:
            storage: Storage = FollowerStorage(settings.data_path / "index")
        else:
            storage = injected or build_storage(settings)
        if injected is None:
            await storage.open()
            gcpolicy.settle()  # the loaded index is long-lived: keep it out of full collections
            gcpolicy.freeze_promoted()
        app[STORAGE] = storage
        yield
        if injected is None:
            gcpolicy.freeze_promoted(False)
            await storage.close()
    return ctx


async def _shared_state_ctx(app: web.Application) -> AsyncIterator[None]:
    """Replay protection, the registry key cache and rate limits: shared by every replica through Redis when
    configured, each falling back to its process-local twin while Redis is unreachable."""
    redis, local = app[REDIS], MemoryReplayStore()
    app[REPLAY] = RedisReplayStore(redis, fallback=local) if redis is not None else local
    if redis is not None and app[SHARED_KEY_CACHE]:
        app[REGISTRY].cache = RedisKeyCache(redis, fallback=app[REGISTRY].cache)
    app[RATE_LIMIT] = build_rate_limiter(app[SETTINGS], redis)
    yield


async def _fanout_ctx(app: web.Application) -> AsyncIterator[None]:
    """Pending fan-out requests and BPP circuits (in Redis when configured)."""
    fanout = build_fanout(app[SETTINGS], registry=app[REGISTRY], storage=app[STORAGE], outbound=app[OUTBOUND],
                          metrics=app[METRICS], clock=app[CLOCK], redis=app[REDIS])
    await fanout.start_stores()
    app[FANOUT] = fanout
    yield
    await fanout.close()


async def _ingest_ctx(app: web.Application) -> AsyncIterator[None]:
    """Where an ACKed publish is kept until indexed. A serving worker of `cds serve` (any worker count): the
    stream, indexed by the supervisor's ingest process or `cds indexer` replicas, never here (§P). Otherwise
    (`cds serve --single-process`, tests): without Redis the in-process pipeline over the local ingest log;
    with Redis the stream, indexed by `cds indexer` workers, or by this process itself when the index is
    embedded (it cannot be shared with another process; CDS_INDEXER_IN_API=auto decides so)."""
    settings, redis = app[SETTINGS], app[REDIS]
    if app[WORKER] and redis is None:
        raise RuntimeError("a serving worker needs Redis (cds serve starts a local one when CDS_REDIS_URL is unset)")
    indexer = CatalogIndexer(app[STORAGE], settings, app[METRICS], app[OUTBOUND], clock=app[CLOCK])
    if redis is None:
        ingest_log = IngestLog(settings.data_path / "ingest")
        await ingest_log.open()
        pipeline = IngestPipeline(ingest_log, indexer)
        app[INGEST] = pipeline
        yield
        await pipeline.close()
        await ingest_log.close()
        return
    stream = IngestStream.from_settings(redis, settings)
    in_api = not app[WORKER] and (settings.indexer_in_api == "true"
                                  or (settings.indexer_in_api == "auto" and not settings.es_url))
    worker = StreamWorker(stream, indexer, app[STORAGE], settings, app[METRICS]) if in_api else None
    ingest = StreamIngest(stream, app[METRICS], worker)
    await ingest.open()
    app[INGEST] = ingest
    yield
    await ingest.close()


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[DISCOVER] = DiscoverService(app[STORAGE], settings, app[METRICS], app[OUTBOUND], clock=app[CLOCK],
                                    fanout=app[FANOUT])
    app[PUBLISH] = PublishService(app[INGEST], app[REPLAY], settings)
    if settings.console_token:
        app[CONSOLE] = ConsoleService(settings=settings, storage=app[STORAGE], metrics=app[METRICS],
                                      registry=app[REGISTRY], fanout=app[FANOUT], ingest=app[INGEST],
                                      discover=app[DISCOVER], clock=app[CLOCK])
    yield


async def _background_ctx(app: web.Application) -> AsyncIterator[None]:
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
        await sweep_expired(storage, metrics, app[CLOCK]())
