"""How `cds serve` listens: one aiohttp runner with the connection limits of docs/decisions.md §28.

- An idle keep-alive connection is closed after `CDS_KEEPALIVE_TIMEOUT_S`. aiohttp's idle timer also runs
  while a new connection (or one between requests) has not yet delivered a complete request head, so it is
  capped by `CDS_READ_TIMEOUT_S`: a head that trickles in is closed within that time.
- The body must then arrive within `CDS_READ_TIMEOUT_S` (`cds.api.handlers.base.read_body`).
- At most `CDS_MAX_CONNECTIONS` connections are open at once (0: half the open-file limit); one more is
  answered with a 503 NACK and closed at once, so stalled clients cannot take every file descriptor. asyncio
  accepts up to `backlog` connections before any of them is refused, so the backlog is kept to a quarter of the
  limit; the soft open-file limit is raised to the hard one at start; and should accept() still run out of
  descriptors, that is one log line per ACCEPT_ERROR_LOG_S, not one traceback per attempt.
- Handlers are never cancelled when a client leaves: an accepted publish is queued all the same.

`serve` is the whole server loop (signals included); `start_site` is the part another launcher can reuse.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import socket
from typing import Any, Callable

from aiohttp import web

from cds.api.appkeys import METRICS
from cds.config import Settings
from cds.core.errors import NET_OVERLOADED, BecknError
from cds.core.models import DIALECT_A
from cds.core.protocol import nack_body

log = logging.getLogger("cds.server")

SHUTDOWN_TIMEOUT_S = 5.0
LINGER_S = 2.0            # after an early reply (413), how long the rest of a body is read and dropped
MAX_BACKLOG = 128
ACCEPT_ERROR_LOG_S = 10.0


def runner_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `web.AppRunner` (they reach every connection's request handler)."""
    return {
        "access_log": None,                  # our own request line replaces it (cds.api.handlers.base)
        "shutdown_timeout": SHUTDOWN_TIMEOUT_S,
        "keepalive_timeout": min(settings.keepalive_timeout_s, settings.read_timeout_s),
        "lingering_time": min(LINGER_S, settings.read_timeout_s),
        "handler_cancellation": False,
    }


def _open_file_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def raise_open_file_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (as Go's runtime does); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1 << 20), hard))
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open-file limit from %s: %s", soft, e)
    return _open_file_limit()


def connection_cap(settings: Settings) -> int:
    """`CDS_MAX_CONNECTIONS`, or half the soft open-file limit (the rest: a burst of accepted-then-refused
    connections, index files, Redis, outbound calls)."""
    if settings.max_connections:
        return settings.max_connections
    return max(16, _open_file_limit() // 2)


def accept_backlog() -> int:
    """Connections asyncio accepts per wake-up (and the listen queue): bounded so a burst cannot exhaust the
    descriptors left beside the connection cap."""
    return max(8, min(MAX_BACKLOG, _open_file_limit() // 4))


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio logs a traceback for every accept() that finds no descriptor left (up to `backlog` per
    wake-up); keep one line per ACCEPT_ERROR_LOG_S instead."""
    last = [float("-inf")]

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != "socket.accept() out of system resource":
            loop.default_exception_handler(context)
            return
        now = loop.time()
        if now - last[0] >= ACCEPT_ERROR_LOG_S:
            last[0] = now
            log.warning("accept() ran out of file descriptors (%s); accepting again in a moment",
                        context.get("exception"))

    loop.set_exception_handler(handler)


_OVERLOADED = nack_body(BecknError(NET_OVERLOADED, "too many open connections; retry shortly", 503), DIALECT_A)
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(_OVERLOADED)).encode() + b"\r\n\r\n" + _OVERLOADED)


class _Refuse(asyncio.Protocol):
    """A connection beyond the cap: one 503 NACK, then closed (its request is never read)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_REFUSAL)
        transport.close()


class CappedSite(web.BaseSite):
    """A TCP site (host/port, or an already bound socket) that refuses connections beyond `cap`."""

    __slots__ = ("_host", "_port", "_sock", "_cap", "_on_refused", "_reuse_port")

    def __init__(self, runner: web.BaseRunner, *, cap: int, host: str | None = None, port: int = 0,
                 sock: socket.socket | None = None, reuse_port: bool | None = None,
                 on_refused: Callable[[], None] = lambda: None, backlog: int = MAX_BACKLOG) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self._sock, self._reuse_port = host, port, sock, reuse_port
        self._cap, self._on_refused = cap, on_refused

    @property
    def name(self) -> str:
        host, port = self.address[:2] if self._server is not None else (self._host, self._port)
        return f"http://{host}:{port}"

    @property
    def address(self) -> tuple:
        """The bound (host, port, ...) once started."""
        assert self._server is not None
        return self._server.sockets[0].getsockname()  # type: ignore[attr-defined]

    def _protocol(self) -> asyncio.BaseProtocol:
        server = self._runner.server
        assert server is not None
        if len(server.connections) >= self._cap:
            self._on_refused()
            return _Refuse()
        return server()

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(self._protocol, sock=self._sock, backlog=self._backlog)
        else:
            self._server = await loop.create_server(self._protocol, self._host, self._port, backlog=self._backlog,
                                                    reuse_address=True, reuse_port=self._reuse_port)


async def start_site(app: web.Application, settings: Settings, *, host: str | None = None, port: int = 0,
                     sock: socket.socket | None = None, reuse_port: bool | None = None
                     ) -> tuple[web.AppRunner, CappedSite]:
    """Start the app (its startup hooks run here) and listen; the caller owns `runner.cleanup()`."""
    runner = web.AppRunner(app, **runner_options(settings))
    await runner.setup()
    refused = app[METRICS].connections_refused
    site = CappedSite(runner, cap=connection_cap(settings), host=host, port=port, sock=sock, reuse_port=reuse_port,
                      on_refused=refused.inc, backlog=accept_backlog())
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site


async def serve(app: web.Application, settings: Settings, *, host: str | None = None, port: int = 0,
                sock: socket.socket | None = None, reuse_port: bool | None = None,
                on_listening: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully (in-flight requests get SHUTDOWN_TIMEOUT_S).
    `on_listening` runs once the socket accepts connections."""
    loop = asyncio.get_running_loop()
    raise_open_file_limit()
    quiet_accept_errors(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner, _site = await start_site(app, settings, host=host, port=port, sock=sock, reuse_port=reuse_port)
    if on_listening is not None:
        on_listening()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
