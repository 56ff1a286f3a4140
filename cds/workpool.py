"""A small bounded thread pool for the CPU-heavy parts of a request (docs/decisions.md §24: nothing heavy on
the serving event loop): planning a discover with large geometries or a long filter, and re-filtering a
fan-out reply. The work is bounded by the request's `WorkBudget`, charged in the worker thread; shapely/GEOS
releases the GIL, and pure-Python work yields it every switch interval, so the loop keeps answering.

One pool per process (sized by CDS_WORK_THREADS on first use): every service of the process shares it, so
the number of threads never grows with the number of requests; a request beyond them waits its turn.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from cds.core.budget import WorkBudget

T = TypeVar("T")

_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cds-work")
        return pool


async def run_off_loop(threads: int, budget: WorkBudget | None, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in the process's work pool, charged to `budget` (its limit applies inside the thread)."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    if budget is None:
        return await loop.run_in_executor(_pool(threads), ctx.run, fn, *args)
    return await loop.run_in_executor(_pool(threads), ctx.run, budget.run, fn, *args)
