"""Application factory (aiohttp): shared resources under typed AppKeys, created and closed by
cleanup contexts in dependency order: HTTP client → registry → storage → services → background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import AsyncIterator, Callable

from aiohttp import web

from cds.config import Settings
from cds.handlers.base import beckn_errors
from cds.metrics import Metrics, new_metrics
from cds.outbound import Outbound, Signer, make_session
from cds.registry import build_registry
from cds.replay import MemoryReplayStore
from cds.routes import setup_routes
from cds.services.discover import DiscoverService
from cds.services.ingest import IngestPipeline
from cds.services.publish import PublishService
from cds.storage_factory import build_storage
from cds.typedefs import CLOCK, DISCOVER, INGEST, METRICS, OUTBOUND, REGISTRY, REPLAY, SETTINGS, STORAGE, TASKS
from indexer.ingest_log import IngestLog
from indexer.storage import Storage

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
    yield
    await app[REGISTRY].close()
    await reg_session.close()
    await session.close()


def _storage_ctx(injected: Storage | None):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        storage = injected or build_storage(app[SETTINGS])
        if injected is None:
            await storage.open()
        app[STORAGE] = storage
        yield
        if injected is None:
            await storage.close()
    return ctx


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings, metrics, storage = app[SETTINGS], app[METRICS], app[STORAGE]
    outbound = app[OUTBOUND]
    clock = app[CLOCK]
    app[DISCOVER] = DiscoverService(storage, settings, metrics, outbound, clock=clock)
    ingest_log = IngestLog(settings.data_path / "ingest")
    await ingest_log.open() if hasattr(ingest_log, "open") else None
    app[INGEST] = IngestPipeline(ingest_log, PublishService(storage, settings, metrics, outbound, clock=clock))
    yield
    await app[INGEST].close()
    await ingest_log.close()


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
        except Exception:  # noqa: BLE001 - keep sweeping; the next round may succeed
            log.exception("expiry purge failed")
