"""`cds request FILE`: a client for people. Reads a Beckn JSON payload, sends it to the endpoint its
`context.action` names (refusing actions the CDS does not serve), signed as the demo BAP or BPP (or a given key)
with fresh ids and timestamp, and prints the reply, the signed callback received on a temporary local port, and a
short summary. Anything the user has to fix is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from typing import Any, NamedTuple

import aiohttp
import orjson
from aiohttp import web

from cds.cli import summary
from cds.core.errors import BecknError
from cds.core.timeutil import rfc3339
from cds.keys import load_private_key
from cds.trust.signing import parse_authorization, sign_request, verify_request

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class RequestError(Exception):
    """One line for stderr and the exit status (EXIT_USAGE: the invocation or the file; EXIT_UNREACHABLE)."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


class Route(NamedTuple):
    path: str                 # under the CDS base URL
    signer: str               # the demo participant that signs ("bap" or "ubc_bpp", keys.json)
    role: str                 # whose context fields the signer fills: "bap" or "bpp"
    callback: str | None      # what the CDS sends back after an ACK
    fresh_ids: bool           # an on_discover keeps its ids: they name the pending fan-out it answers


_PUBLISH = Route("/catalog/publish", "ubc_bpp", "bpp", "on_catalog_publish", True)
ROUTES = {
    "discover": Route("/discover", "bap", "bap", "on_discover", True),
    "catalog_publish": _PUBLISH,
    "catalog/publish": _PUBLISH,             # the LTS spelling
    "on_discover": Route("/on_discover", "ubc_bpp", "bpp", None, False),
}
_SERVED = "discover, catalog_publish (catalog/publish) and on_discover"
_HINTS = {
    "search": "Beckn v2 calls it discover",
    "on_catalog_publish": "the CDS sends it to publishers",
    "catalog/on_publish": "the CDS sends it to publishers",
}


def route_for(doc: Any) -> tuple[str, Route]:
    """The action and its route; RequestError for a payload the CDS would refuse whatever its signature."""
    ctx = doc.get("context") if isinstance(doc, dict) else None
    if not isinstance(ctx, dict):
        raise RequestError("the payload has no context object: is it a Beckn request?")
    action = ctx.get("action")
    if not isinstance(action, str) or not action:
        raise RequestError(f"the payload has no context.action: set it to one of {_SERVED}")
    route = ROUTES.get(action)
    if route is None:
        hint = _HINTS.get(action, "send it to a BPP")
        raise RequestError(f"context.action '{action[:64]}' is not served by the CDS ({hint}); "
                           f"the CDS serves {_SERVED}")
    return action, route


def refresh_context(doc: dict[str, Any], *, subscriber_id: str, callback_uri: str) -> str:
    """New ids (except for on_discover) and timestamp; the signer becomes the requesting party, its catalogs'
    bppId too. Returns the action."""
    action, route = route_for(doc)
    ctx = doc["context"]
    camel = "bapId" in ctx or "bppId" in ctx or "messageId" in ctx or "intent" in (doc.get("message") or {})
    if route.fresh_ids:
        for n in (("transactionId", "messageId") if camel else ("transaction_id", "message_id")):
            ctx[n] = str(uuid.uuid4())
    ctx["timestamp"] = rfc3339()
    ctx.setdefault("ttl", "PT30S")
    ctx.setdefault("version", "2.0.0")
    role = route.role
    id_key, uri_key = (f"{role}Id", f"{role}Uri") if camel else (f"{role}_id", f"{role}_uri")
    ctx[id_key], ctx[uri_key] = subscriber_id, callback_uri
    if route is _PUBLISH:
        msg = doc.get("message") if isinstance(doc.get("message"), dict) else doc
        for cat in msg.get("catalogs", []):
            for k in ("beckn:bppId", "bppId"):
                if isinstance(cat, dict) and k in cat:
                    cat[k] = subscriber_id
    return action


def load_payload(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise RequestError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise RequestError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RequestError(f"{path} holds a JSON {type(doc).__name__}, not a Beckn request object")
    return doc


def signer(args: argparse.Namespace, route: Route) -> tuple[str, str, Any]:
    """(subscriber_id, key_id, SigningKey): --key with its ids, else the demo participant of the route."""
    if args.key:
        if not args.subscriber_id or not args.key_id:
            raise RequestError("--key needs --subscriber-id and --key-id (the registry record of that key)")
        try:
            return args.subscriber_id, args.key_id, load_private_key(args.key)
        except ValueError as e:
            raise RequestError(f"--key: {e}") from None
    from cds.demo.seed import demo_key

    try:
        return demo_key(route.signer)
    except (OSError, ValueError, KeyError) as e:
        raise RequestError(f"no demo key: {e}") from None


class Exchange(NamedTuple):
    """What happened on the wire, for printing and for the summary."""

    method: str
    url: str
    status: int
    reply: bytes
    elapsed_ms: float
    done: float                # perf_counter when the reply was read


async def send(method: str, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Exchange:
    hint = "is `cds serve --demo` running? --url sets the address"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s:
            t0 = time.perf_counter()
            async with s.request(method, url, data=body, headers=headers) as resp:
                reply = await resp.read()
                done = time.perf_counter()
                return Exchange(method, url, resp.status, reply, (done - t0) * 1000, done)
    except aiohttp.InvalidURL:
        raise RequestError(f"--url: not a valid URL: {url}") from None
    except aiohttp.ClientConnectorError as e:
        err = e.os_error
        why = os.strerror(err.errno) if isinstance(err.errno, int) and err.errno > 0 else (err.strerror or str(err))
        raise RequestError(f"cannot reach {url}: {why} ({hint})", EXIT_UNREACHABLE) from None
    except asyncio.TimeoutError:
        raise RequestError(f"no reply from {url} within {timeout_s:g} s (--wait)", EXIT_UNREACHABLE) from None
    except aiohttp.ClientError as e:
        raise RequestError(f"{method} {url} failed: {e.__class__.__name__}: {e}", EXIT_UNREACHABLE) from None


class Callback(NamedTuple):
    path: str
    headers: dict[str, str]
    body: bytes
    arrived_at: float          # unix time
    after_ms: float            # since the reply was received


class CallbackListener:
    """A temporary local server for the CDS's signed callback (`{bap_uri|bpp_uri}/<action>`)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._received: asyncio.Queue[tuple[str, dict[str, str], bytes, float, float]] = asyncio.Queue()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> "CallbackListener":
        async def callback(request: web.Request) -> web.Response:
            body = await request.read()
            await self._received.put((request.path, dict(request.headers), body, time.time(), time.perf_counter()))
            return web.json_response({"message": {"ack": {"status": "ACK"}}})

        app = web.Application()
        app.router.add_post("/{role}/{action:.*}", callback)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            raise RequestError(f"--callback-host {self.host}: cannot listen there: {e.strerror or e}") from None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def uri(self, role: str) -> str:
        return f"http://{self.host}:{self.port}/{role}"

    async def next(self, timeout_s: float, since: float) -> Callback | None:
        try:
            path, headers, body, at, mono = await asyncio.wait_for(self._received.get(), timeout_s)
        except asyncio.TimeoutError:
            return None
        return Callback(path, headers, body, at, max(0.0, (mono - since) * 1000))


async def check_signature(cb: Callback, registry_file: str | None) -> tuple[bool | None, str]:
    """(True, "verified …") / (False, "INVALID: …") / (None, "not checked: …") for a callback's signature,
    against the key its keyId names in a registry file (CDS_REGISTRY_FILE, else the demo one)."""
    from cds.trust.registry_sources import FileSource

    try:
        sig = parse_authorization(cb.headers.get("Authorization"))
    except BecknError as e:
        return False, f"INVALID: {e.message}"
    key_ref = f"{sig.subscriber_id}|{sig.key_id}"
    if not registry_file or not os.path.exists(registry_file):
        return None, f"not checked: no registry file to find the key of {key_ref} (CDS_REGISTRY_FILE)"
    try:
        records = await FileSource(registry_file).lookup(sig.subscriber_id, sig.key_id)
    except ValueError as e:
        return None, f"not checked: {e}"
    keys = [r.signing_public_key for r in records if r.key_id == sig.key_id and r.signing_public_key]
    if not keys:
        return None, f"not checked: {key_ref} is not in {registry_file}"
    try:
        verify_request(sig, cb.body, keys[0], now=time.time(), skew_s=5, digest_header=cb.headers.get("Digest"))
    except BecknError as e:
        return False, f"INVALID ({key_ref}): {e.message}"
    return True, f"verified ({key_ref})"


def _registry_file() -> str | None:
    from cds.demo.seed import demo_dir

    return os.environ.get("CDS_REGISTRY_FILE") or str(demo_dir() / "registry.json")


def _json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _print_json(data: bytes) -> None:
    doc = _json(data)
    print(data[:2000].decode("utf-8", "replace") if doc is None
          else orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


async def run_request(args: argparse.Namespace) -> int:
    """The whole command; RequestError becomes one line on stderr (cds.cli.main)."""
    doc = load_payload(args.file)
    action, route = route_for(doc)
    flag = "--get" if args.get else "--sync-post" if args.sync_post else None
    if flag and action != "discover":
        raise RequestError(f"{flag} is for discover only: {'an' if action[0] in 'aeiou' else 'a'} {action} is "
                           "POSTed" + (f" and answered by an {route.callback} callback" if route.callback else "")
                           + f"; drop {flag}")
    sub_id, key_id, key = signer(args, route)
    show_json = not (args.summary or args.quiet)
    sync = args.get or args.sync_post     # the on_discover comes back in the reply, not as a callback
    async with CallbackListener(args.callback_host) as listener:
        refresh_context(doc, subscriber_id=sub_id, callback_uri=listener.uri(route.role))
        body = orjson.dumps(doc)
        headers = {"Content-Type": "application/json",
                   "Authorization": sign_request(body, subscriber_id=sub_id, key_id=key_id, key=key)}
        if args.sync_post:      # the synchronous answer over POST (docs/decisions.md §W)
            headers["Prefer"] = "return=representation"
        method = "GET" if args.get else "POST"
        ex = await send(method, args.url.rstrip("/") + route.path, body, headers, args.wait)
        reply = _json(ex.reply)
        if show_json:
            print(f"{method} {ex.url} -> HTTP {ex.status} in {ex.elapsed_ms:.1f} ms")
            _print_json(ex.reply)
        lines = [f"request:  {action} as {sub_id}, {method} {ex.url}",
                 f"reply:    {summary.reply_line(ex.status, reply, ex.elapsed_ms)}"]
        ok = ex.status == 200 and summary.ack_status(reply) != "NACK"
        if ok and sync:
            lines += summary.result_lines(reply)
        elif ok and route.callback is not None:
            ok = await _callback(listener, route, ex, args.wait, show_json, lines)
    if not args.quiet:
        print(("\n" if show_json else "") + "\n".join(lines))
    return EXIT_OK if ok else EXIT_FAILED


async def _callback(listener: CallbackListener, route: Route, ex: Exchange, wait_s: float, show_json: bool,
                    lines: list[str]) -> bool:
    """Wait for the callback, print it, add its summary lines; False when none came or its signature is bad."""
    cb = await listener.next(wait_s, since=ex.done)
    if cb is None:
        lines.append(f"callback: no {route.callback} within {wait_s:g} s (--wait)")
        return False
    verified, how = await check_signature(cb, _registry_file())
    doc = _json(cb.body)
    if show_json:
        print(f"\ncallback POST {cb.path}")
        _print_json(cb.body)
    lines.append(f"callback: {summary.action_of(doc) or cb.path} at {rfc3339(cb.arrived_at)}, "
                 f"{cb.after_ms:.1f} ms after the reply; signature {how}")
    lines += summary.result_lines(doc)
    return verified is not False
