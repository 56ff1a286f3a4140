"""Loaded by every Python process started with this directory on PYTHONPATH: with $CDS_BENCH_LOOPTRACE_DIR set,
a `cds serve` process traces its event loop (`loadtests.looptrace`). Load tests only."""

import os
import sys

if os.environ.get("CDS_BENCH_LOOPTRACE_DIR") and "serve" in getattr(sys, "orig_argv", ()):
    from loadtests.looptrace import install

    install(os.environ["CDS_BENCH_LOOPTRACE_DIR"])
