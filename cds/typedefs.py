"""Typed application keys (aiohttp AppKey) for the resources shared by handlers."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Callable

from aiohttp import web

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from cds.config import Settings
    from cds.fanout import Fanout
    from cds.ratelimit import RateLimiter
    from cds.metrics import Metrics
    from cds.outbound import Outbound
    from cds.registry import Registry
    from cds.replay import ReplayStore
    from cds.services.discover import DiscoverService
    from cds.services.ingest import IngestPipeline
    from indexer.storage import Storage

SETTINGS: web.AppKey["Settings"] = web.AppKey("settings")
METRICS: web.AppKey["Metrics"] = web.AppKey("metrics")
STORAGE: web.AppKey["Storage"] = web.AppKey("storage")
REGISTRY: web.AppKey["Registry"] = web.AppKey("registry")
REPLAY: web.AppKey["ReplayStore"] = web.AppKey("replay")
OUTBOUND: web.AppKey["Outbound"] = web.AppKey("outbound")
DISCOVER: web.AppKey["DiscoverService"] = web.AppKey("discover_service")
INGEST: web.AppKey["IngestPipeline"] = web.AppKey("ingest_pipeline")
CLOCK: web.AppKey["Callable[[], float]"] = web.AppKey("clock")
TASKS: web.AppKey["set[asyncio.Task]"] = web.AppKey("background_tasks")
# Fan-out (issue 6): the shared Redis client (None without CDS_REDIS_URL; cds.redisconn.connect) and the
# fan-out service (pending requests + circuit breaker, in Redis when configured).
REDIS: web.AppKey["Redis | None"] = web.AppKey("redis")
FANOUT: web.AppKey["Fanout"] = web.AppKey("fanout")
# Shared state (issue 5): per-subscriber rate limiter (None = no limit).
RATE_LIMIT: web.AppKey["RateLimiter | None"] = web.AppKey("rate_limit")
