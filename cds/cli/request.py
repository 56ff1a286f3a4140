"""`cds request FILE`: a client for people. Signs a JSON payload, refreshes its context, sends it,
prints the reply and, for a POST (unless --sync-post), the signed callback received on a temporary local port."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from cds.core.timeutil import rfc3339
from cds.keys import load_private_key
from cds.trust.signing import sign_request

PUBLISH = ("catalog_publish", "catalog/publish")


def refresh_context(doc: dict[str, Any], *, subscriber_id: str, callback_uri: str) -> str:
    """New ids and timestamp; the signer becomes the requesting party. Returns the action."""
    ctx = doc.setdefault("context", {})
    camel = "bapId" in ctx or "messageId" in ctx or "intent" in (doc.get("message") or {})
    action = ctx.get("action", "discover")
    names = ("transactionId", "messageId") if camel else ("transaction_id", "message_id")
    for n in names:
        ctx[n] = str(uuid.uuid4())
    ctx["timestamp"] = rfc3339()
    ctx.setdefault("ttl", "PT30S")
    ctx.setdefault("version", "2.0.0")
    role = "bpp" if action in PUBLISH else "bap"
    id_key, uri_key = (f"{role}Id", f"{role}Uri") if camel else (f"{role}_id", f"{role}_uri")
    ctx[id_key], ctx[uri_key] = subscriber_id, callback_uri
    if action in PUBLISH:
        msg = doc.get("message") if isinstance(doc.get("message"), dict) else doc
        for cat in msg.get("catalogs", []):
            for k in ("beckn:bppId", "bppId"):
                if k in cat:
                    cat[k] = subscriber_id
    return action


async def run_request(args: argparse.Namespace) -> int:
    with open(args.file, "rb") as f:
        doc = orjson.loads(f.read())
    action = (doc.get("context") or {}).get("action", "discover")
    if args.key:
        key = load_private_key(args.key)
        sub_id, key_id = args.subscriber_id, args.key_id
        if not sub_id or not key_id:
            print("--key needs --subscriber-id and --key-id", file=sys.stderr)
            return 2
    else:
        from cds.demo.seed import demo_key

        sub_id, key_id, key = demo_key("ubc_bpp" if action in PUBLISH else "bap")
    base = (args.url or "http://127.0.0.1:8080/beckn").rstrip("/")
    received: asyncio.Queue = asyncio.Queue()

    async def callback(request: web.Request) -> web.Response:
        await received.put((request.path, dict(request.headers), await request.read()))
        return web.json_response({"message": {"ack": {"status": "ACK"}}})

    cb_app = web.Application()
    cb_app.router.add_post("/{role}/{action:.*}", callback)
    runner = web.AppRunner(cb_app)
    await runner.setup()
    site = web.TCPSite(runner, args.callback_host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    role = "bpp" if action in PUBLISH else "bap"
    refresh_context(doc, subscriber_id=sub_id, callback_uri=f"http://{args.callback_host}:{port}/{role}")
    body = orjson.dumps(doc)
    headers = {"Content-Type": "application/json",
               "Authorization": sign_request(body, subscriber_id=sub_id, key_id=key_id, key=key)}
    path = {"discover": "/discover", "on_discover": "/on_discover"}.get(action, "/catalog/publish")
    method = "GET" if args.get else "POST"
    if args.sync_post:      # the synchronous answer over POST (docs/decisions.md §W)
        headers["Prefer"] = "return=representation"
    try:
        async with aiohttp.ClientSession() as s:
            t0 = time.perf_counter()
            async with s.request(method, base + path, data=body, headers=headers) as resp:
                reply = await resp.read()
                print(f"{method} {base + path} -> HTTP {resp.status} in {(time.perf_counter() - t0) * 1000:.1f} ms")
                _print_json(reply)
        if method == "POST" and not args.sync_post and resp.status == 200:
            try:
                cb_path, cb_headers, cb_body = await asyncio.wait_for(received.get(), args.wait)
            except asyncio.TimeoutError:
                print(f"no callback within {args.wait:.0f} s", file=sys.stderr)
                return 1
            print(f"\ncallback POST {cb_path}\nAuthorization: {cb_headers.get('Authorization', '(none)')[:120]}...")
            _print_json(cb_body)
        return 0 if resp.status == 200 else 1
    finally:
        await runner.cleanup()


def _print_json(data: bytes) -> None:
    try:
        print(orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2).decode())
    except orjson.JSONDecodeError:
        print(data[:2000].decode("utf-8", "replace"))
