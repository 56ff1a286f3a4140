"""Start `cds serve` with an on-demand cProfile switch (load tests only; cds/ knows nothing of this).

    python -m loadtests.profile_serve serve --port 8080      # same arguments as `cds`
    kill -USR1 <pid>    # start profiling the event-loop thread
    kill -USR2 <pid>    # stop and write pstats to $CDS_BENCH_PROFILE_OUT (default ./cds.prof)

Without the signals it is exactly `cds.cli.main`, so the benchmark runner always starts the CDS through
this wrapper and profiles only the window it chooses (a dedicated short scenario), in the same process
whose throughput and memory it measured."""

from __future__ import annotations

import cProfile
import os
import signal
import sys

from cds.cli import main as cds_main

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


def main(argv: list[str] | None = None) -> int:
    # aiohttp's run_app only claims SIGINT/SIGTERM; these two stay ours. The handlers run on the main
    # thread, which is the event-loop thread, so the profiler sees every request handler.
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    return cds_main(argv)


if __name__ == "__main__":
    sys.exit(main())
