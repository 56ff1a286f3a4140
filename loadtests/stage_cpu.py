"""Start `cds` with a discover's stages timed on the serving thread's CPU clock (load tests only; cds/ knows
nothing of this). `loadtests.bench_edge --stages` runs the server through it.

    python -m loadtests.stage_cpu serve --single-process --port 18671     # same arguments as `cds`
    kill -USR1 <pid>    # start counting (from zero)
    kill -USR2 <pid>    # write the counts to $CDS_BENCH_STAGE_CPU_OUT (JSON, seconds)

The functions of each stage are wrapped before the API imports them, so the request path calls the wrapped ones:
parse (`parse_json`, `peek_ids`, `parse_context`, `parse_discover`), plan (`cheap_to_plan`, `DiscoverService.plan`),
search (every slice of the embedded search), assemble (`DiscoverService._render`: catalogs and the on_discover
body) and signature (libsodium's verification), each counted only on the serving thread (a route planned in the
work pool costs the loop nothing). `thread` is that thread's whole CPU time over the same window: what it spent
outside the stages is the request edge (HTTP, handler, registry, budget, metrics, serialising and
sending the answer), each wrapped call adding two clock reads (~1.5 µs each).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import nacl.signing
import orjson

from cds.core import protocol

_cpu = time.thread_time
_spent: dict[str, float] = {}
_since = [0.0]
# The event loop's thread (`--single-process`): the main thread, where the signal handlers below run too.
_SERVING = threading.main_thread().ident


def _timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != _SERVING:           # another thread: not the loop's CPU (`thread` below)
            return fn(*args, **kwargs)
        t = _cpu()
        try:
            return fn(*args, **kwargs)
        finally:
            _spent[stage] = _spent.get(stage, 0.0) + (_cpu() - t)
    return timed


def instrument() -> None:
    """Wrap the stages (before anything binds them by name: call first)."""
    for name in ("parse_json", "peek_ids", "parse_context", "parse_discover"):
        setattr(protocol, name, _timed("parse", getattr(protocol, name)))
    from cds.services import discover
    from indexer.embedded import store

    discover.cheap_to_plan = _timed("plan", discover.cheap_to_plan)
    discover.DiscoverService.plan = _timed("plan", discover.DiscoverService.plan)
    discover.DiscoverService._render = _timed("assemble", discover.DiscoverService._render)
    store._advance = _timed("search", store._advance)
    nacl.signing.VerifyKey.verify = _timed("signature", nacl.signing.VerifyKey.verify)


def _start(signum: int, frame: object) -> None:
    _spent.clear()
    _since[0] = _cpu()


def _write(signum: int, frame: object) -> None:
    out = {**_spent, "thread": _cpu() - _since[0]}
    with open(os.environ.get("CDS_BENCH_STAGE_CPU_OUT", "stage_cpu.json"), "wb") as f:
        f.write(orjson.dumps(out))


def main(argv: list[str] | None = None) -> int:
    instrument()
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _write)
    from cds.cli.main import main as cds_main

    return cds_main(argv)


if __name__ == "__main__":
    sys.exit(main())
