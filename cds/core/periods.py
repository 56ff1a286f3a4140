"""TimePeriods of a published catalog (validity of catalogs and offers, availability windows of items) read
into instants and daily windows, for `cds.core.normalize`."""

from __future__ import annotations

import functools
import re
from typing import Any

from cds.core.fields import period_values
from cds.core.timeutil import daily_seconds_local, parse_instant

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@functools.lru_cache(maxsize=4096)
def _date(s: str, tz: Any, end: bool) -> float | None:
    # Cached: a network's offers and catalogs share a few validity dates.
    # A bare end date ("valid till 2026-03-31") lasts to the end of that local day.
    if end and _DATE_ONLY.match(s.strip()):
        s = s.strip() + "T24:00:00"
    return parse_instant(s, tz)


Period = tuple[float | None, float | None, tuple[int, int] | None, str | None]


def parse_period(p: Any, tz: Any, at: float) -> Period:
    """(start instant, end instant, daily window, problem) of a TimePeriod in either dialect.

    startTime/endTime given as times of day make a daily window in local seconds (docs/decisions.md §5, §16); given
    as date-times (UBC examples) they are instants and narrow the date range.
    """
    return _period_of(period_values(p), tz, at)


def period_in(p: Any, memo: dict, tz: Any, at: float) -> Period:
    """parse_period, once per distinct period of a catalog (its items and offers mostly share a few). The memo
    is keyed by the period as published: equal keys hold equal strings (other values are not read)."""
    try:
        key = tuple(p.items()) if isinstance(p, dict) else None
        got = memo.get(key)
    except TypeError:    # an unhashable value (a list, an object): read this period on its own
        return _period_of(period_values(p), tz, at)
    if got is None:
        got = memo[key] = _period_of(period_values(p), tz, at)
    return got


def _period_of(vals: dict, tz: Any, at: float) -> Period:
    start = end = None
    daily = None
    problem = None
    if "startDate" in vals:
        start = _date(vals["startDate"], tz, False)
        problem = problem or (None if start is not None else f"unreadable startDate {vals['startDate'][:40]!r}")
    if "endDate" in vals:
        end = _date(vals["endDate"], tz, True)
        problem = problem or (None if end is not None else f"unreadable endDate {vals['endDate'][:40]!r}")
    st, et = vals.get("startTime"), vals.get("endTime")
    if st is not None or et is not None:
        ds, de = daily_seconds_local(st, tz, at), daily_seconds_local(et, tz, at)
        if ds is not None and de is not None:
            daily = (ds, de)
        else:
            i0, i1 = parse_instant(st, tz), parse_instant(et, tz)
            if i0 is not None and i1 is not None:
                start = i0 if start is None else max(start, i0)
                end = i1 if end is None else min(end, i1)
            else:
                problem = "startTime and endTime must both be times of day or both be date-times"
    if start is not None and end is not None and start > end:
        problem = "the period ends before it starts"
    return start, end, daily, problem
