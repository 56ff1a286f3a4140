"""What every Beckn endpoint shares: bounded body reading, the inbound check pipeline
(JSON → context → signature → authorisation, docs/decisions.md §12), replay detection and ACK/NACK replies."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from cds.core import errors as E
from cds.trust.auth import Inbound, authenticate
from cds.core.errors import BecknError
from cds.core.models import DIALECT_A
from cds.core.protocol import (ack_body, detect_dialect, nack_body, parse_context, parse_json, parse_publish_json,
                               peek_ids)
from cds.trust.ratelimit import check_rate
from cds.api.appkeys import METRICS, RATE_LIMIT, REGISTRY, SETTINGS, SPOOL_DIR, TASKS
from cds.api.spool import Spooled, SpoolWriter, read_skeleton
from indexer.ingest.entry import discard_spool

log = logging.getLogger("cds.http")

# Request-scoped keys: what the error middleware needs to shape a NACK and a log line. IDS are read from the
# body before any check (an early NACK still logs the ids it was sent); SIGNER is set once the signature verified.
DIALECT: web.RequestKey[str] = web.RequestKey("cds.dialect")
IDS: web.RequestKey[dict[str, str | None]] = web.RequestKey("cds.ids")
SIGNER: web.RequestKey[str] = web.RequestKey("cds.signer")


class ClientGone(Exception):
    """The client stalled past CDS_READ_TIMEOUT_S or disconnected: nobody is waiting for a reply
    (outcome `aborted`, one log line, docs/decisions.md §28)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def read_body(request: web.Request, limit: int, timeout_s: float, *, spool: Path | None = None,
                    spool_bytes: int = 0) -> bytes | Spooled:
    """Read at most `limit` bytes (413 with a NACK body beyond it, docs/decisions.md §10) within `timeout_s`
    (then the connection is closed: a stalled upload must not hold it, §28). With `spool`, a body past
    `spool_bytes` goes to a spool file as it arrives (`cds.api.spool`) and its `Spooled` is returned."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_big(limit)
    content = request.content
    if spool is None and content.is_eof():
        # The whole body came with the headers (a small request): take it as it is, nothing to wait for.
        try:
            body = content.read_nowait()
        except (ConnectionError, HttpProcessingError) as e:
            raise _lost(e) from None
        if len(body) > limit:
            raise _too_big(limit)
        return body
    chunks: list[bytes] = []
    size = 0
    writer: SpoolWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                chunk = await content.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise _too_big(limit)
                if writer is not None:
                    writer.write(chunk)
                    continue
                chunks.append(chunk)
                if spool is not None and size > spool_bytes:
                    writer = SpoolWriter(spool)
                    for c in chunks:
                        writer.write(c)
                    chunks = []
            if writer is not None:
                return await writer.finish()
    except TimeoutError:
        request.protocol.force_close()
        raise ClientGone(f"request body not received within {timeout_s:g} s") from None
    except (ConnectionError, HttpProcessingError) as e:
        raise _lost(e) from None
    finally:
        if writer is not None and writer.fd >= 0:
            writer.abandon()
    return b"".join(chunks)


def _too_big(limit: int) -> BecknError:
    return BecknError(E.SCH_SCHEMA_VALIDATION_FAILED, f"request body exceeds the limit of {limit} bytes", 413)


def _lost(e: Exception) -> ClientGone:
    return ClientGone(f"connection lost while reading the request body ({type(e).__name__})")


async def receive(request: web.Request, *, actions: set[str], limit: int, skeleton: bool = False) -> Inbound:
    """`skeleton`: a publish, whose catalogs' items the checks before the ACK never read (`parse_publish_json`);
    a large one is spooled where the app allows it (SPOOL_DIR). The caller owns `Inbound.spool` then: it
    queues it or discards it (`indexer.ingest.entry.discard_spool`)."""
    received_at = time.time()
    spool_dir = request.app[SPOOL_DIR] if skeleton else None
    settings = request.app[SETTINGS]
    got = await read_body(request, limit, settings.read_timeout_s, spool=spool_dir, spool_bytes=settings.spool_bytes)
    if not isinstance(got, Spooled):
        doc = parse_publish_json(got) if skeleton else parse_json(got)
        return await _checked(request, doc, actions, received_at, body=got)
    try:
        return await _checked(request, await read_skeleton(got.path), actions, received_at, spooled=got)
    except BaseException:
        discard_spool(got.path)
        raise


async def _checked(request: web.Request, doc: Any, actions: set[str], received_at: float, *, body: bytes = b"",
                   spooled: Spooled | None = None) -> Inbound:
    """Context, signature (over `body`, or a spooled body's digest), rate limit: the pipeline of §12."""
    app = request.app
    settings = app[SETTINGS]
    request[DIALECT] = dialect = detect_dialect(doc)
    request[IDS] = peek_ids(doc)
    ctx = parse_context(doc, expected_actions=actions, now=received_at, clock_skew_s=settings.clock_skew_s,
                        dialect=dialect)
    caller = await authenticate(body, request.headers, app[REGISTRY], skew_s=settings.clock_skew_s, now=received_at,
                                digest=spooled.digest if spooled is not None else None)
    request[SIGNER] = caller.subscriber_id
    await check_rate(app.get(RATE_LIMIT), caller.subscriber_id, ctx.action)   # 429 AUT_RATE_LIMITED
    return Inbound(body=body, doc=doc, context=ctx, caller=caller, received_at=received_at,
                   spool=spooled.path if spooled is not None else None)


def ack(request: web.Request) -> web.Response:
    return web.Response(body=ack_body(request.get(DIALECT, DIALECT_A)), content_type="application/json")


def nack(err: BecknError, dialect: str, realm: str) -> web.Response:
    headers = {}
    if err.status == 401:
        headers["WWW-Authenticate"] = f'Signature realm="{realm}",headers="(created) (expires) digest"'
    retry_after = getattr(err, "retry_after", None)      # rate limits (cds.trust.ratelimit.RateLimited)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return web.Response(status=err.status, body=nack_body(err, dialect), content_type="application/json",
                        headers=headers)


def spawn(app: web.Application, coro: Awaitable[Any]) -> asyncio.Task:
    """Run a background job owned by the app (cancelled on shutdown, exceptions logged)."""
    task = asyncio.ensure_future(coro)
    tasks = app[TASKS]
    tasks.add(task)

    def done(t: asyncio.Task) -> None:
        tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("background task failed", exc_info=t.exception())

    task.add_done_callback(done)
    return task


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def beckn_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn BecknError into NACKs, anything unexpected into a logged 500 NACK, a client that left into the
    `aborted` outcome (one line, no traceback), and count outcomes."""
    t0 = time.perf_counter()
    metrics = request.app[METRICS]
    action = _action_of(request)
    code = reason = None
    try:
        resp = await handler(request)
        outcome = "ack" if resp.status < 400 else "nack"
    except BecknError as err:
        dialect = request.get(DIALECT, DIALECT_A)
        resp = nack(err, dialect, request.app[SETTINGS].subscriber_id)
        metrics.nacks.labels(action, err.code).inc()
        outcome, code = "nack", err.code
    except web.HTTPException:
        raise
    except ClientGone as gone:
        resp, outcome, reason = _gone(request, gone.reason), "aborted", gone.reason
    except Exception as exc:  # noqa: BLE001 - last resort: never leak a stack trace or an HTML 500
        if isinstance(exc, ConnectionError) and _client_left(request):
            reason = f"client disconnected ({type(exc).__name__})"
            resp, outcome = _gone(request, reason), "aborted"
        else:
            log.exception("unhandled error on %s %s", request.method, request.path)
            err = BecknError(E.NET_INTERNAL_ERROR, "internal error", 500)
            resp = nack(err, request.get(DIALECT, DIALECT_A), request.app[SETTINGS].subscriber_id)
            outcome = "error"
    if outcome != "error" and outcome != "aborted" and _client_left(request):
        # Done, but the client is gone: the work stands (a publish stays queued), the reply reaches nobody.
        outcome, reason = "aborted", "client disconnected before the reply"
    if outcome != "error":
        _log_request(request, action, outcome, code, t0, reason)
    if action != "other":
        metrics.requests.deferred(action, outcome).inc()
        metrics.latency.deferred(action, outcome).observe(time.perf_counter() - t0)
    return resp


def _gone(request: web.Request, reason: str) -> web.Response:
    """What an aborted request answers: usually nobody reads it (aiohttp drops it on the closed connection);
    a body cut off mid-stream on a live connection gets a 400 NACK, and the connection is closed."""
    err = BecknError(E.SCH_SCHEMA_VALIDATION_FAILED, f"request incomplete: {reason}", 400)
    resp = nack(err, request.get(DIALECT, DIALECT_A), request.app[SETTINGS].subscriber_id)
    resp.force_close()
    return resp


def _client_left(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _action_of(request: web.Request) -> str:
    name = getattr(request.match_info.route, "name", None) or ""
    return name.split(".")[0] if name else "other"


def _log_request(request: web.Request, action: str, outcome: str, code: str | None, t0: float,
                 reason: str | None = None) -> None:
    """One line per Beckn request. `signer`: the subscriber whose signature verified (null before that);
    `claimed`: who the context says is calling (bap_id on discover, bpp_id else, as cds.trust.auth checks);
    `reason`: why an aborted request ended."""
    if action == "other" or not log.isEnabledFor(logging.INFO):
        return
    ids = request.get(IDS) or {}
    claimed = ids.get("bap_id") if action == "discover" else ids.get("bpp_id") or (
        ids.get("bap_id") if action == "catalog_publish" else None)
    fields = {
        "action": action, "method": request.method, "outcome": outcome, "code": code,
        "transaction_id": ids.get("transaction_id"), "message_id": ids.get("message_id"),
        "signer": request.get(SIGNER), "claimed": claimed,
        "latency_ms": round((time.perf_counter() - t0) * 1000, 3)}
    if reason is not None:
        fields["reason"] = reason
    log.info("request", extra={"fields": fields})
