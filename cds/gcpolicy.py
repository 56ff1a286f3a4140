"""Garbage-collector policy for a process that holds a large in-memory index.

A full cyclic collection walks every tracked object; with hundreds of thousands of index objects
that is a 0.3–6 s stop of the event loop (measured, BENCHMARKS.md). Index objects are long-lived and
never form cycles, so after building them we collect the young generations (cheap) and freeze the
survivors out of future collections. Cyclic garbage that reached the old generation before a freeze
would be kept, so a rare full sweep (`full_sweep`, hourly from the purge loop) unfreezes, collects
and freezes again.

While serving, `freeze_promoted` freezes what survives each generation-1 collection as well: otherwise the
objects promoted since the last freeze (discovers waiting for the background lane, connections, caches) are
walked by every automatic full collection, a stop of tens of ms in the middle of ACKs (measured,
docs/decisions.md §P, "ACKs first"). Cyclic garbage among them waits for the hourly sweep; the services make
almost none (a few objects per thousand requests).
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


def _freeze_after_young(phase: str, info: dict) -> None:
    if phase == "stop" and info.get("generation") == 1:
        gc.freeze()


def freeze_promoted(on: bool = True) -> None:
    """Freeze the survivors of every generation-1 collection from now on (on=False: stop)."""
    if on and _freeze_after_young not in gc.callbacks:
        gc.callbacks.append(_freeze_after_young)
    elif not on and _freeze_after_young in gc.callbacks:
        gc.callbacks.remove(_freeze_after_young)
