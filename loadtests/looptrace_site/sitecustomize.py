"""Loaded by every Python process started with this directory on PYTHONPATH: with $CDS_BENCH_LOOPTRACE_DIR set,
a `cds serve` process traces its event loop (`loadtests/looptrace.py`, loaded by path so that another checkout's
`cds`, e.g. a baseline's, can be traced too). Load tests only."""

import os
import sys

if os.environ.get("CDS_BENCH_LOOPTRACE_DIR") and "serve" in getattr(sys, "orig_argv", ()):
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "cds_bench_looptrace", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "looptrace.py"))
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    _mod.install(os.environ["CDS_BENCH_LOOPTRACE_DIR"])
