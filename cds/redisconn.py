"""The one place a Redis client is made (fan-out state now; replay, key cache, rate limits and ingest may
reuse it). `None` when CDS_REDIS_URL is unset: every user then falls back to its in-process store."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from cds.config import Settings

# Redis sits on the request path (fan-out replies, circuit state): fail fast rather than hang a discover.
SOCKET_TIMEOUT_S = 2.0
# A Redis on a Unix socket is on this machine (e.g. the private one of `cds serve --workers N`): a slow reply
# there means a busy machine (a catalog of tens of MB takes seconds to copy and fsync), not a lost network.
UNIX_SOCKET_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 256


def connect(settings: "Settings") -> "Redis | None":
    """A pooled asyncio client for settings.redis_url (binary replies: callers decode what they need)."""
    if not settings.redis_url:
        return None
    from redis.asyncio import Redis

    local = settings.redis_url.startswith("unix://")
    return Redis.from_url(settings.redis_url, socket_timeout=UNIX_SOCKET_TIMEOUT_S if local else SOCKET_TIMEOUT_S,
                          socket_connect_timeout=CONNECT_TIMEOUT_S, max_connections=MAX_CONNECTIONS,
                          health_check_interval=30, decode_responses=False)
