"""Start `cds serve` with benchmark instrumentation (load tests only; cds/ knows nothing of this).

    python -m loadtests.profile_serve serve --port 8080      # same arguments as `cds`
    kill -USR1 <pid>    # start cProfile on the event-loop thread
    kill -USR2 <pid>    # stop it and write pstats to $CDS_BENCH_PROFILE_OUT (default ./cds.prof)
    kill -HUP <pid>     # experiment: gc.freeze() (everything alive now leaves the collector's view)

Also, when $CDS_BENCH_GC_OUT is set, every garbage collection is timed (gc.callbacks; a few µs each) and
written there as JSON when the server exits: per generation the count, total and maximum pause, and every
generation-2 pause with its wall-clock time, so the runner can attribute stop-the-world pauses to scenarios.

Without signals and variables this is exactly `cds.cli.main.main`, so the benchmark runner always starts the CDS
through it and profiles only the window it chooses, in the same process whose throughput and memory it
measured. With $CDS_BENCH_STAGES_OUT, `loadtests.stage_trace` times the steps of every publish indexed here;
with $CDS_BENCH_STUB, `loadtests.edge_stubs` takes parts of a discover out (`bench_edge --stub`).
"""

from __future__ import annotations

import cProfile
import gc
import os
import signal
import sys
import time

import orjson

from cds.cli.main import main as cds_main

_profiler: cProfile.Profile | None = None


def _start(signum: int, frame: object) -> None:
    global _profiler
    if _profiler is None:
        _profiler = cProfile.Profile()
        _profiler.enable()


def _stop(signum: int, frame: object) -> None:
    global _profiler
    if _profiler is not None:
        _profiler.disable()
        _profiler.dump_stats(os.environ.get("CDS_BENCH_PROFILE_OUT", "cds.prof"))
        _profiler = None


class GcTimer:
    MAX_FULL = 100_000   # recorded generation-2 pauses (bounded)

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.total_ms = [0.0, 0.0, 0.0]
        self.max_ms = [0.0, 0.0, 0.0]
        self.full: list[tuple[float, float]] = []   # (time.time() at start, ms)
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        g = info["generation"]
        ms = (time.perf_counter() - self._t0) * 1000
        self.count[g] += 1
        self.total_ms[g] += ms
        self.max_ms[g] = max(self.max_ms[g], ms)
        if g == 2 and len(self.full) < self.MAX_FULL:
            self.full.append((time.time() - ms / 1000, ms))

    def dump(self, path: str) -> None:
        with open(path, "wb") as f:
            f.write(orjson.dumps({"count": self.count, "total_ms": self.total_ms, "max_ms": self.max_ms,
                                  "full": self.full}))


def _freeze(signum: int, frame: object) -> None:
    # What a service could do after loading its index: long-lived objects are never traversed again by
    # generation-2 collections (the runner's --gc-freeze uses this to size the effect; cds/ does not do it).
    gc.collect()
    gc.freeze()


def main(argv: list[str] | None = None) -> int:
    # aiohttp's run_app only claims SIGINT/SIGTERM; these two stay ours. The handlers run on the main
    # thread, which is the event-loop thread, so the profiler sees every request handler.
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    signal.signal(signal.SIGHUP, _freeze)
    gc_out = os.environ.get("CDS_BENCH_GC_OUT")
    timer = GcTimer() if gc_out else None
    if timer:
        gc.callbacks.append(timer)
    if os.environ.get("CDS_BENCH_STUB"):
        from loadtests.edge_stubs import apply

        apply()
    stages_out = os.environ.get("CDS_BENCH_STAGES_OUT")
    if stages_out:
        from loadtests.stage_trace import install

        install(stages_out)
    try:
        return cds_main(argv)
    finally:
        if timer and gc_out:
            timer.dump(gc_out)


if __name__ == "__main__":
    sys.exit(main())
