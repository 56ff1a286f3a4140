"""Typed application keys (aiohttp AppKey) for the resources the handlers share."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from aiohttp import web

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from cds.config import Settings
    from cds.fanout.engine import Fanout
    from cds.metrics import Metrics
    from cds.services.console import ConsoleService
    from cds.services.discover import DiscoverService
    from cds.services.publish import PublishService
    from cds.trust.outbound import Outbound
    from cds.trust.ratelimit import RateLimiter
    from cds.trust.registry import Registry
    from cds.trust.replay import ReplayStore
    from indexer.ingest.local import IngestPipeline
    from indexer.ingest.stream import StreamIngest
    from indexer.storage import Storage

SETTINGS: web.AppKey["Settings"] = web.AppKey("settings")
METRICS: web.AppKey["Metrics"] = web.AppKey("metrics")
CLOCK: web.AppKey["Callable[[], float]"] = web.AppKey("clock")
TASKS: web.AppKey["set[asyncio.Task]"] = web.AppKey("background_tasks")
# Shared Redis client; None without CDS_REDIS_URL (every user then keeps its state in-process).
REDIS: web.AppKey["Redis | None"] = web.AppKey("redis")
OUTBOUND: web.AppKey["Outbound"] = web.AppKey("outbound")
REGISTRY: web.AppKey["Registry"] = web.AppKey("registry")
STORAGE: web.AppKey["Storage"] = web.AppKey("storage")
REPLAY: web.AppKey["ReplayStore"] = web.AppKey("replay")
RATE_LIMIT: web.AppKey["RateLimiter | None"] = web.AppKey("rate_limit")   # None = no limit
FANOUT: web.AppKey["Fanout"] = web.AppKey("fanout")
INGEST: web.AppKey["IngestPipeline | StreamIngest"] = web.AppKey("ingest")
DISCOVER: web.AppKey["DiscoverService"] = web.AppKey("discover_service")
PUBLISH: web.AppKey["PublishService"] = web.AppKey("publish_service")
CONSOLE: web.AppKey["ConsoleService"] = web.AppKey("console_service")   # only with CDS_CONSOLE_TOKEN
# True in a serving worker of `cds serve --workers N` (docs/decisions.md §P).
WORKER: web.AppKey[bool] = web.AppKey("worker")
# Where large publish bodies are spooled (docs/decisions.md §P); None: they travel in the queue.
SPOOL_DIR: web.AppKey["Path | None"] = web.AppKey("spool_dir")
# False when Redis is the supervisor's machine-local one: registry keys stay in each worker's memory.
SHARED_KEY_CACHE: web.AppKey[bool] = web.AppKey("shared_key_cache")
