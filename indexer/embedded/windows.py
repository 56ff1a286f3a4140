"""The availability windows of the indexed items as numpy rows, so a search decides a filter's `WindowTerm`
(`cds.core.timevec`) for a block of candidates at once (docs/decisions.md §G "windows").

Items of one station publish the same windows: each distinct set (instant windows, daily windows) is one row,
shared and counted; an item holds its row number (`Index.wrow`; row 0: no window at all). A row keeps the
first `MAX_INSTANTS` instant and `MAX_DAILY` daily windows; a set with more is `partial`: a window among the kept
ones meeting the term still decides a match, none meeting it decides nothing (the matcher tests the item).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from cds.core import timevec
from cds.core.timevec import NEVER, WindowTerm
from cds.core.timeutil import DAY

MAX_INSTANTS = 4
MAX_DAILY = 2
_EMPTY: tuple = ((), ())


class WindowSets:
    def __init__(self) -> None:
        self._row_of: dict[tuple, int] = {_EMPTY: 0}
        self._keys: list[tuple | None] = [_EMPTY]
        self._refs: list[int] = [0]
        self._free: list[int] = []
        self.inst_s = np.full((1, MAX_INSTANTS), math.nan)     # NaN: no window (every comparison is false)
        self.inst_e = np.full((1, MAX_INSTANTS), math.nan)
        # daily windows as (start, start + span); no window: bounds no test meets
        self.day_start = np.full((1, MAX_DAILY), NEVER, np.int64)
        self.day_end = np.full((1, MAX_DAILY), -NEVER, np.int64)
        self.day_any = np.zeros(1, bool)                       # some daily window is kept
        self.day_full = np.zeros(1, bool)                      # ... and lasts the whole day
        self.partial = np.zeros(1, bool)

    def __len__(self) -> int:
        """Rows in use (row 0 included)."""
        return len(self._row_of)

    def add(self, windows: Sequence[Any], daily: Sequence[Any]) -> int:
        """The row of an item with these windows (counted: `release` it when the item goes)."""
        key = (tuple(map(tuple, windows)), tuple(map(tuple, daily)))
        row = self._row_of.get(key)
        if row is None:
            row = self._new(key)
        self._refs[row] += 1
        return row

    def release(self, row: int) -> None:
        self._refs[row] -= 1
        if not self._refs[row] and row:
            del self._row_of[self._keys[row]]  # type: ignore[index]
            self._keys[row] = None
            self._free.append(row)

    def _new(self, key: tuple) -> int:
        if self._free:
            row = self._free.pop()
        else:
            row = len(self._keys)
            self._keys.append(None)
            self._refs.append(0)
            if row >= len(self.partial):
                self._grow(2 * row)
        self._keys[row] = key
        self._row_of[key] = row
        inst, daily = key
        self.inst_s[row] = self.inst_e[row] = math.nan
        for j, (s, e) in enumerate(inst[:MAX_INSTANTS]):
            self.inst_s[row, j], self.inst_e[row, j] = s, e
        self.day_start[row], self.day_end[row] = NEVER, -NEVER
        self.day_any[row] = self.day_full[row] = False
        partial = len(inst) > MAX_INSTANTS or len(daily) > MAX_DAILY
        for j, (s, e) in enumerate(daily[:MAX_DAILY]):
            if type(s) is not int or type(e) is not int or not (0 <= s <= DAY and 0 <= e <= DAY):
                # (local seconds since midnight; anything else is left to the matcher)
                partial = True
                continue
            span = timevec.daily_span(s, e)
            self.day_start[row, j], self.day_end[row, j] = s, s + span
            self.day_any[row] = True
            self.day_full[row] |= span >= DAY
        self.partial[row] = partial
        return row

    def _grow(self, cap: int) -> None:
        def grown(a: np.ndarray, fill: Any) -> np.ndarray:
            out = np.full((cap,) + a.shape[1:], fill, dtype=a.dtype)
            out[:len(a)] = a
            return out
        self.inst_s, self.inst_e = grown(self.inst_s, math.nan), grown(self.inst_e, math.nan)
        self.day_start, self.day_end = grown(self.day_start, NEVER), grown(self.day_end, -NEVER)
        self.day_any, self.day_full = grown(self.day_any, False), grown(self.day_full, False)
        self.partial = grown(self.partial, False)

    def meet(self, rows: np.ndarray, term: WindowTerm) -> tuple[np.ndarray, np.ndarray]:
        """(surely meets, surely does not meet) the `WindowTerm` for each of `rows`: exactly
        the answers of the filter's per-window test where one is given (`cds.core.timevec`)."""
        yes = timevec.any_per_row(timevec.instants_meet(self.inst_s[rows], self.inst_e[rows], term.x, term.y))
        bounds = term.bounds
        if bounds.any_meets:
            yes |= self.day_any[rows]
        else:
            yes |= self.day_full[rows]
            yes |= timevec.any_per_row(timevec.daily_meet(self.day_start[rows], self.day_end[rows], bounds))
        return yes, ~(yes | self.partial[rows])
