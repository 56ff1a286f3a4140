"""A filter's availability-window conjunct (`WindowTerm`) and its test for many windows at once, with numpy:
the same answers as `cds.core.filter_compiler` gives one window at a time (docs/decisions.md §G "windows").

The Python test of a window against `startTime <= x && endTime >= y` (instants x, y; wall seconds xw, yw):
- an instant window (s, e): `s <= x and e >= y`;
- a daily window: `timeutil.overlaps_wall(win, yw, xw)` when xw >= yw, else `timeutil.contains_wall(win, xw, yw)`.
Here the same comparisons run element-wise: floats against floats, and for daily windows integers against exact
integer bounds (`DailyBounds`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
import numpy as np

from cds.core import timeutil
from cds.core.timeutil import DAY

NEVER = 1 << 62                 # beyond any wall second: a bound no window reaches (a daily start none reaches)


def instants_meet(s: np.ndarray, e: np.ndarray, x: float, y: float) -> np.ndarray:
    """Instant windows [s, e] (NaN: no window) that meet the term."""
    return (s <= x) & (e >= y)


def daily_span(start: int, end: int) -> int:
    """The length `timeutil` gives a daily window (a full day: DAY): stored as its end, start + span."""
    return timeutil.start_span((start, end))[1]


class DailyBounds:
    """The term's test of a daily window of local seconds (start, end = start + `daily_span`), as bounds:
    `any_meets` (the queried interval lasts a day or more: every window meets it, no bound is made), else the
    window meets it when it lasts the whole day or `start <= a[j] and end >= b[j]` for some j.

    `overlaps_wall` / `contains_wall` test the window's occurrences k*DAY + start (k over a few days) with
    `k*DAY + start <= le` and `k*DAY + start + span >= ls`; for integers these are `start <= floor(le) - k*DAY`
    and `start + span >= ceil(ls) - k*DAY`: exact integer bounds, computed once per query."""

    __slots__ = ("any_meets", "a", "b")

    def __init__(self, xw: float, yw: float) -> None:
        a: list[int] = []
        b: list[int] = []
        if xw >= yw:            # timeutil.overlaps_wall(win, ls=yw, le=xw)
            ls, le = yw, xw
            # a day or more: every window meets it (as overlaps_wall says first); bounding its days would make
            # one bound per day of the interval, millions for a filter from 1970 to 9999 (0.9 s on the loop)
            self.any_meets = le - ls >= DAY
            if not self.any_meets:
                days = range(int(ls // DAY) - 1, int(le // DAY) + 1)       # at most three
                a, b = [math.floor(le) - k * DAY for k in days], [math.ceil(ls) - k * DAY for k in days]
        else:                   # timeutil.contains_wall(win, ls=xw, le=yw)
            ls, le = xw, yw
            d = int(ls // DAY)
            self.any_meets = False
            a, b = [math.floor(ls) - k * DAY for k in (d - 1, d)], [math.ceil(le) - k * DAY for k in (d - 1, d)]
        # (padded to 4 bounds that no window meets: `any_per_row` reads a row of 2 x 4 answers as one integer)
        a += [-NEVER] * (4 - len(a))
        b += [NEVER] * (4 - len(b))
        self.a, self.b = np.array(a, np.int64), np.array(b, np.int64)


@dataclass(frozen=True, slots=True)
class WindowTerm:
    """A conjunct of a compiled item filter: some availability window of the item meets `startTime <= x &&
    endTime >= y` (instants; `Compiler._window_pattern`, whose wall seconds of x and y are `xw`, `yw`).
    `rest_is_pushdowns`: the other conjuncts hold exactly when the Query's terms and ranges do
    (`cds.core.exactness`). A search may decide the conjunct for many items at once (`bounds`: its test of daily
    windows, made once per compiled filter, not per search)."""

    x: float
    y: float
    xw: float
    yw: float
    rest_is_pushdowns: bool
    bounds: DailyBounds = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bounds", DailyBounds(self.xw, self.yw))


def daily_meet(start: np.ndarray, end: np.ndarray, bounds: DailyBounds) -> np.ndarray:
    """For daily windows (start, end: int64 arrays of any shape) whether each meets each bound pair (a last axis
    of 4); a window meets the term if it does so for some pair, lasts the whole day, or `bounds.any_meets`."""
    return (start[..., None] <= bounds.a) & (end[..., None] >= bounds.b)


_ROW_INT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def any_per_row(m: np.ndarray) -> np.ndarray:
    """`m.reshape(len(m), -1).any(axis=1)` for a C-contiguous bool array: a row of 1, 2, 4 or 8 answers is read
    as one integer (numpy's reduction along an axis costs several times more on small arrays)."""
    if not len(m):
        return np.zeros(0, bool)
    width = m.size // len(m)
    if width in _ROW_INT and m.flags.c_contiguous:
        return m.reshape(len(m), width).view(_ROW_INT[width]).reshape(len(m)) != 0
    return m.reshape(len(m), -1).any(axis=1)
