"""Parts of a synchronous discover taken out, to see what the rest costs (load tests only; cds/ knows nothing
of this, and this knows only the services, not the API). `loadtests.bench_edge --stub LIST` sets $CDS_BENCH_STUB
and `loadtests.profile_serve` applies it:

- `answer`: each distinct request (message id) is answered for real once, then the same body every time
  (planning aside, search and assembly are gone: the body is the same ~100 KB of Fragments, still serialised);
- `plan`: likewise, each request's Query is planned once;
- `verify`: libsodium's signature verification returns at once (the header is still parsed, the key looked up);
- `dumps` (with `answer`): the reused body is serialised once, and the handler's `orjson.dumps` then only copies
  those bytes (an `orjson.Fragment`, ~100 KB of memcpy).

Each is removed from the same server, so the difference between two runs of `bench_edge` is what the removed part
cost in place (caches and allocator as they are when it runs), which the per-stage clock of `--stages` does not
see for work outside its stages."""

from __future__ import annotations

import os
from typing import Any

import orjson

STUBS = ("answer", "plan", "verify", "dumps")


def _once_per_message(method: Any, serialised: bool = False) -> Any:
    """`method(self, req, ...)`, computed once per request message id (the mix repeats 400 requests);
    `serialised`: kept as the Fragment of its JSON."""
    done: dict[str, Any] = {}

    async def once(self: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
        key = req.context.message_id
        if key not in done:
            got = await method(self, req, *args, **kwargs)
            done[key] = orjson.Fragment(orjson.dumps(got)) if serialised else got
        return done[key]
    return once


def apply(spec: str | None = None) -> None:
    """Apply the stubs named in `spec` (comma-separated; default $CDS_BENCH_STUB)."""
    names = [s for s in (spec if spec is not None else os.environ.get("CDS_BENCH_STUB", "")).split(",") if s]
    unknown = set(names) - set(STUBS)
    if unknown:
        raise SystemExit(f"unknown stub(s) {sorted(unknown)}: choose from {', '.join(STUBS)}")
    if "dumps" in names and "answer" not in names:
        raise SystemExit("the dumps stub serialises a reused answer once: it needs the answer stub too")
    from cds.services.discover import DiscoverService

    if "answer" in names:
        DiscoverService.answer = _once_per_message(DiscoverService.answer,  # type: ignore[method-assign]
                                                   serialised="dumps" in names)
    if "plan" in names:
        DiscoverService.plan_bounded = _once_per_message(DiscoverService.plan_bounded)  # type: ignore[method-assign]
    if "verify" in names:
        import nacl.signing

        nacl.signing.VerifyKey.verify = lambda self, smessage, signature=None, encoder=None: smessage
