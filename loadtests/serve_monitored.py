"""Start `cds serve` with an event-loop hold monitor (load tests only; cds/ knows nothing of this).

    CDS_BENCH_LOOPHOLD_OUT=hold.json python -m loadtests.serve_monitored serve --demo --port 8080

Every callback the event loop runs (a task step, an I/O callback) is timed in CPU time of the loop thread
(`time.thread_time`) and in wall time; the longest ones are written as JSON to $CDS_BENCH_LOOPHOLD_OUT every
second and at exit. The CPU figure is how long one request held the loop (docs/decisions.md §24: at most
50 ms), whatever else the machine is doing; the wall figure adds the time the process waited for a core.
Without the variable this is exactly `cds.cli.main.main`.
"""

from __future__ import annotations

import asyncio.events
import os
import sys
import threading
import time
import traceback
from typing import Any

import orjson

from cds.cli.main import main as cds_main

_OVER_S = 0.010            # callbacks kept for the report: longer than this (CPU)
_worst: list[tuple[float, float, float, str]] = []   # (cpu s, wall s, epoch, what)
_counts = {"callbacks": 0, "over_10ms": 0, "over_50ms": 0}
_lock = threading.Lock()


def _what(handle: asyncio.events.Handle) -> str:
    cb = handle._callback                                  # noqa: SLF001 - instrumentation
    owner = getattr(cb, "__self__", None)
    coro = getattr(owner, "get_coro", None)
    if coro is not None:
        c = coro()
        code = getattr(c, "cr_code", None)
        return f"task {getattr(c, '__qualname__', '?')} ({code.co_filename.rsplit('/', 2)[-1] if code else '?'})"
    return repr(cb)[:100]


_running: list[Any] = [None, 0]          # CPU time at the start of the running callback, its serial number
_stacks: list[dict[str, Any]] = []      # where the loop thread was when a callback passed _STACK_AFTER_S
_STACK_AFTER_S = 0.040


def _watchdog(loop_tid: int) -> None:
    """Samples the loop thread: a callback past _STACK_AFTER_S of CPU has its stack recorded (once)."""
    clock = time.pthread_getcpuclockid(loop_tid)
    seen = -1
    while True:
        time.sleep(0.005)
        t0, serial = _running
        if t0 is None or serial == seen or time.clock_gettime(clock) - t0 < _STACK_AFTER_S:
            continue
        frame = sys._current_frames().get(loop_tid)         # noqa: SLF001 - instrumentation
        if frame is None:
            continue
        seen = serial
        with _lock:
            _stacks.append({"at": round(time.time(), 3),
                            "stack": [ln.strip() for ln in traceback.format_stack(frame)[-14:]]})
            del _stacks[:-20]


_gc: dict[str, Any] = {"t0": 0.0, "max_ms": 0.0, "over_50ms": []}


def _gc_timer(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc["t0"] = time.thread_time()
        return
    ms = (time.thread_time() - _gc["t0"]) * 1000
    _gc["max_ms"] = max(_gc["max_ms"], ms)
    if ms > 50:
        _gc["over_50ms"] = (_gc["over_50ms"] + [{"at": round(time.time(), 3), "ms": round(ms, 1),
                                                 "generation": info.get("generation")}])[-20:]


def install(out: str) -> None:
    import gc

    gc.callbacks.append(_gc_timer)
    run = asyncio.events.Handle._run
    threading.Thread(target=_watchdog, args=(threading.get_ident(),), name="loophold-watchdog", daemon=True).start()

    def timed(self: asyncio.events.Handle) -> None:
        c0, t0 = time.thread_time(), time.perf_counter()
        _running[0], _running[1] = c0, _running[1] + 1
        try:
            run(self)
        finally:
            _running[0] = None
            cpu = time.thread_time() - c0
            _counts["callbacks"] += 1
            if cpu > _OVER_S:
                wall = time.perf_counter() - t0
                with _lock:
                    _counts["over_10ms"] += 1
                    _counts["over_50ms"] += cpu > 0.05
                    _worst.append((cpu, wall, time.time(), _what(self)))
                    _worst.sort(reverse=True)
                    del _worst[50:]

    asyncio.events.Handle._run = timed                     # type: ignore[method-assign]

    def dump() -> None:
        with _lock:
            doc = {**_counts, "max_cpu_ms": round(_worst[0][0] * 1000, 1) if _worst else 0.0,
                   "top": [{"cpu_ms": round(c * 1000, 1), "wall_ms": round(w * 1000, 1), "at": round(t, 3),
                            "what": what} for c, w, t, what in _worst],
                   "stacks": list(_stacks), "gc_max_ms": round(_gc["max_ms"], 1), "gc_over_50ms": _gc["over_50ms"]}
        tmp = out + ".tmp"
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        os.replace(tmp, out)

    def loop() -> None:
        while True:
            time.sleep(1.0)
            dump()

    threading.Thread(target=loop, name="loophold-dump", daemon=True).start()
    import atexit

    atexit.register(dump)


def main(argv: list[str] | None = None) -> int:
    out = os.environ.get("CDS_BENCH_LOOPHOLD_OUT")
    if out:
        install(out)
    return cds_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
