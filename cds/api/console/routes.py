"""Routes of the operator console (docs/decisions.md §R; README "Operator console"). Mounted only when
CDS_CONSOLE_TOKEN is set.

Every route, the page and its static files included, needs the operator token: `Authorization: Bearer
<token>`, or the cookie set by opening `/console?token=<token>` once (HttpOnly, SameSite=Strict, scoped to
/console; it holds a hash of the token, never the token). Everything is read-only; the tester's POST has no
effect beyond its answer. The routes carry no name, so Beckn request metrics and logs leave them out.
The page loads nothing from elsewhere (Content-Security-Policy 'self'), except map tiles when
CDS_CONSOLE_TILE_URL is set.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from pathlib import Path
from typing import Awaitable, Callable
from urllib.parse import urlsplit

import msgspec
import orjson
from aiohttp import web

from cds.api.appkeys import CONSOLE, SETTINGS
from cds.core.errors import BecknError

STATIC = Path(__file__).parent / "static"
COOKIE = "cds_console"
MAX_FORM_BYTES = 64 << 10
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".geojson": "application/geo+json"}
_LOGIN = b"""<!doctype html><meta charset="utf-8"><title>CDS console</title>
<body style="font:15px system-ui;margin:3em"><h1>CDS operator console</h1>
<p>This console needs the operator token (CDS_CONSOLE_TOKEN).</p>
<form method="get" action="/console"><input name="token" type="password" size="40" autofocus>
<button>Open</button></form></body>"""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _cookie_value(token: str) -> str:
    return hashlib.sha256(b"cds-console:" + token.encode()).hexdigest()


def _authorized(request: web.Request) -> bool:
    token = request.app[SETTINGS].console_token or ""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), _cookie_value(token).encode())


def _unauthorized(api: bool) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="cds-console"', "Cache-Control": "no-store"}
    if api:
        return web.json_response({"error": {"code": "UNAUTHORIZED", "message": "operator token required"}},
                                 status=401, headers=headers)
    return web.Response(status=401, body=_LOGIN, content_type="text/html", headers=headers)


def _guarded(handler: Handler, *, api: bool = True) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not _authorized(request):
            return _unauthorized(api)
        return _secured(request, await handler(request))
    return guarded


def _secured(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    resp.headers.setdefault("Cache-Control", "no-store")
    resp.headers["Content-Security-Policy"] = _csp(request.app[SETTINGS].console_tile_url)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


def _csp(tile_url: str | None) -> str:
    img = "'self' data:"
    if tile_url:
        parts = urlsplit(tile_url.replace("{s}", "*"))
        img += f" {parts.scheme}://{parts.netloc}"
    return (f"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src {img}; "
            "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _json(doc: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc, default=msgspec.to_builtins, option=orjson.OPT_SERIALIZE_NUMPY),
                        status=status, content_type="application/json")


def _bad(message: str, paths: str | None = None, code: str = "BAD_REQUEST") -> web.Response:
    return _json({"error": {"code": code, "message": message, "paths": paths}}, status=400)


async def page(request: web.Request) -> web.StreamResponse:
    token = request.query.get("token")
    if token is not None:
        # Opened with ?token=: trade it for the cookie and drop it from the address bar (and history).
        if not hmac.compare_digest(token.encode(), (request.app[SETTINGS].console_token or "").encode()):
            return _unauthorized(api=False)
        resp = web.HTTPSeeOther("/console")
        resp.set_cookie(COOKIE, _cookie_value(token), path="/console", httponly=True, samesite="Strict",
                        secure=request.secure)
        raise resp
    if not _authorized(request):
        return _unauthorized(api=False)
    return _secured(request, _static_response("index.html"))


def _static_response(name: str) -> web.Response:
    path = (STATIC / name).resolve()
    if STATIC.resolve() not in path.parents or not path.is_file() or path.suffix not in _TYPES:
        raise web.HTTPNotFound()
    return web.Response(body=path.read_bytes(), content_type=_TYPES[path.suffix],
                        headers={"Cache-Control": "no-cache"})


async def static(request: web.Request) -> web.StreamResponse:
    return _static_response(request.match_info["name"])


async def config(request: web.Request) -> web.Response:
    s = request.app[SETTINGS]
    return _json({"subscriber_id": s.subscriber_id, "domain": s.domain, "tile_url": s.console_tile_url,
                  "status_fresh_s": s.status_fresh_s, "max_results": s.max_results})


async def overview(request: web.Request) -> web.Response:
    return _json(await request.app[CONSOLE].overview())


async def bpps(request: web.Request) -> web.Response:
    return _json({"bpps": await request.app[CONSOLE].bpps()})


def _bbox(raw: str | None) -> tuple[float, float, float, float] | None:
    if not raw:
        return None
    parts = [float(x) for x in raw.split(",")]
    if len(parts) != 4 or not all(math.isfinite(x) for x in parts):
        raise ValueError("bbox must be lon_min,lat_min,lon_max,lat_max")
    return (max(-180.0, parts[0]), max(-90.0, parts[1]), min(180.0, parts[2]), min(90.0, parts[3]))


async def coverage(request: web.Request) -> web.Response:
    q = request.query
    try:
        precision = min(max(int(q.get("precision", "6")), 0), 20)
        max_points = min(max(int(q.get("max_points", "500")), 0), 2000)
        bbox = _bbox(q.get("bbox"))
    except ValueError as e:
        return _bad(str(e))
    cov = await request.app[CONSOLE].coverage(precision=precision, bbox=bbox, bpp_id=q.get("bpp") or None,
                                              max_points=max_points)
    return _json(cov)


async def discover(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        return _bad(f"the form exceeds {MAX_FORM_BYTES} bytes")
    body = await request.content.read(MAX_FORM_BYTES + 1)
    if len(body) > MAX_FORM_BYTES:
        return _bad(f"the form exceeds {MAX_FORM_BYTES} bytes")
    try:
        form = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        return _bad("the form must be JSON")
    try:
        return _json(await request.app[CONSOLE].test_discover(form))
    except BecknError as e:
        return _bad(e.message, e.paths, e.code)


def setup_console(app: web.Application) -> None:
    """Mount /console when CDS_CONSOLE_TOKEN is set (without it the paths do not exist: 404)."""
    if not app[SETTINGS].console_token:
        return
    app.router.add_get("/console", page)
    app.router.add_get("/console/static/{name:[A-Za-z0-9_.\\-/]+}", _guarded(static, api=False))
    app.router.add_get("/console/api/config", _guarded(config))
    app.router.add_get("/console/api/overview", _guarded(overview))
    app.router.add_get("/console/api/bpps", _guarded(bpps))
    app.router.add_get("/console/api/coverage", _guarded(coverage))
    app.router.add_post("/console/api/discover", _guarded(discover))
