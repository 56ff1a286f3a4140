"""Parts of a synchronous discover taken out, to see what the rest costs (load tests only; cds/ knows nothing
of this). `loadtests.bench_edge --stub LIST` sets $CDS_BENCH_STUB and `loadtests.profile_serve` applies it:

- `answer`: each distinct request (message id) is answered for real once, then the same body every time
  (planning aside, search and assembly are gone: the body is the same ~100 KB of Fragments, still serialised);
- `plan`: likewise, each request's Query is planned once;
- `verify`: libsodium's signature verification returns at once (the header is still parsed, the key looked up);
- `dumps`: the answer's `orjson.dumps` is done once per body, then reused;
- `bare`: the handler only reads the body and returns a fixed 100 KB body (aiohttp, the error middleware and the
  send are what is left).

Each is removed from the same server, so the difference between two runs of `bench_edge` is what the removed part
cost in place (caches and allocator as they are when it runs), which the per-stage clock of `--stages` does not
see for work outside its stages."""

from __future__ import annotations

import os
from typing import Any

import orjson

STUBS = ("answer", "plan", "verify", "dumps", "bare")


def _once_per_message(method: Any) -> Any:
    """`method(self, req, ...)`, computed once per request message id (the mix repeats 400 requests)."""
    done: dict[str, Any] = {}

    async def once(self: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
        key = req.context.message_id
        if key not in done:
            done[key] = await method(self, req, *args, **kwargs)
        return done[key]
    return once


class _DumpOnce:
    """Stands in for the handler's `orjson`: `dumps` of an answer body it has serialised before is reused."""

    def __init__(self) -> None:
        self._done: dict[int, tuple[Any, bytes]] = {}

    def dumps(self, obj: Any, *args: Any, **kwargs: Any) -> bytes:
        got = self._done.get(id(obj))
        if got is None or got[0] is not obj:
            got = self._done[id(obj)] = (obj, orjson.dumps(obj, *args, **kwargs))
        return got[1]


def apply(spec: str | None = None) -> list[str]:
    """Apply the stubs named in `spec` (comma-separated; default $CDS_BENCH_STUB); returns their names."""
    names = [s for s in (spec if spec is not None else os.environ.get("CDS_BENCH_STUB", "")).split(",") if s]
    unknown = set(names) - set(STUBS)
    if unknown:
        raise SystemExit(f"unknown stub(s) {sorted(unknown)}: choose from {', '.join(STUBS)}")
    from cds.api.handlers import discover as handler
    from cds.services.discover import DiscoverService

    if "answer" in names:
        DiscoverService.answer = _once_per_message(DiscoverService.answer)
    if "plan" in names:
        DiscoverService.plan_bounded = _once_per_message(DiscoverService.plan_bounded)
    if "verify" in names:
        import nacl.signing

        nacl.signing.VerifyKey.verify = lambda self, smessage, signature=None, encoder=None: smessage
    if "dumps" in names:
        handler.orjson = _DumpOnce()  # type: ignore[assignment]
    if "bare" in names:
        from aiohttp import web

        body = orjson.dumps({"filler": "x" * 100_000})

        async def get(self: Any) -> web.Response:
            await self.request.read()
            return web.Response(body=body, content_type="application/json")
        handler.DiscoverView.get = get  # type: ignore[method-assign]
    return names
