"""A filter's availability-window conjunct (`WindowTerm`) and its test for many windows at once, with numpy:
the same answers as `cds.core.filter_compiler` gives one window at a time (docs/decisions.md §G "windows").

The Python test of a window against `startTime <= x && endTime >= y` (instants x, y; wall seconds xw, yw):
- an instant window (s, e): `s <= x and e >= y`;
- a daily window: `timeutil.overlaps_wall(win, yw, xw)` when xw >= yw, else `timeutil.contains_wall(win, xw, yw)`.
Here the same comparisons run element-wise. Integers meet floats exactly in both (numpy converts the int64 to
float64, exact below 2**53; wall seconds stay far below: year 9999 is about 2.5e11).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cds.core import timeutil
from cds.core.timeutil import DAY


@dataclass(frozen=True, slots=True)
class WindowTerm:
    """A conjunct of a compiled item filter: some availability window of the item meets `startTime <= x &&
    endTime >= y` (instants; `Compiler._window_pattern`, whose wall seconds of x and y are `xw`, `yw`).
    `rest_is_pushdowns`: the other conjuncts hold exactly when the Query's terms and ranges do
    (`cds.core.exactness`). A search may decide the conjunct for many items at once (below)."""

    x: float
    y: float
    xw: float
    yw: float
    rest_is_pushdowns: bool


def window_term(predicate: Any) -> WindowTerm | None:
    """The `WindowTerm` of a compiled filter's predicate (`Query.predicate`), if it has one."""
    return getattr(predicate, "window_term", None)


def instants_meet(s: np.ndarray, e: np.ndarray, x: float, y: float) -> np.ndarray:
    """Instant windows [s, e] (NaN: no window) that meet the term."""
    return (s <= x) & (e >= y)


def daily_span(start: int, end: int) -> int:
    """The length `timeutil` gives a daily window (a full day: DAY), stored next to its start."""
    return timeutil.start_span((start, end))[1]


def daily_meet(start: np.ndarray, span: np.ndarray, xw: float, yw: float) -> np.ndarray:
    """Daily windows (start, `daily_span`; int64) that meet the term."""
    if xw >= yw:            # timeutil.overlaps_wall(win, ls=yw, le=xw)
        ls, le = yw, xw
        if le - ls >= DAY:
            return np.ones(start.shape, bool)
        out = span >= DAY
        for d in range(int(ls // DAY) - 1, int(le // DAY) + 1):
            os = d * DAY + start
            out |= (os <= le) & (os + span >= ls)
        return out
    ls, le = xw, yw         # timeutil.contains_wall(win, ls=xw, le=yw)
    out = span >= DAY
    d = int(ls // DAY)
    for k in (d - 1, d):
        os = k * DAY + start
        out |= (os <= ls) & (os + span >= le)
    return out
