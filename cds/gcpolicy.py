"""Garbage-collector policy for a process that holds a large in-memory index.

A full cyclic collection walks every tracked object; with hundreds of thousands of index objects
that is a 0.3–6 s stop of the event loop (measured, BENCHMARKS.md). Index objects are long-lived and
never form cycles, so after building them we collect the young generations (cheap) and freeze the
survivors out of future collections. Cyclic garbage that reached the old generation before a freeze
would be kept, so a rare full sweep (`full_sweep`, hourly from the purge loop) unfreezes, collects
and freezes again.
"""

from __future__ import annotations

import gc
import time

_last_full = time.monotonic()


def settle() -> None:
    """Call after creating long-lived objects (storage open, a catalog indexed)."""
    gc.collect(1)
    gc.freeze()


def full_sweep(interval_s: float = 3600.0) -> bool:
    """At most once per interval: one full collection over everything, then freeze again."""
    global _last_full
    now = time.monotonic()
    if now - _last_full < interval_s:
        return False
    _last_full = now
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return True
