"""Time parsing and daily-window arithmetic shared by normalisation and discover matching.

Conventions (docs/decisions.md §5, §16):
- A date-time with `Z` or an offset is an instant (epoch seconds, UTC).
- A date-time without an offset is wall-clock time in the network time zone (`CDS_TIMEZONE`).
- A time of day recurs daily. Without an offset it is local time in the network zone; with an offset
  (`13:00:00Z`, `18:30:00+05:30`) it recurs at that offset's wall time, i.e. it is converted into the
  network zone's wall clock.
- A daily window is `(start_s, end_s)` in seconds since local midnight (0..86400). `start > end` wraps past
  midnight (22:00-06:00); `start == end` means the whole day (operators write 00:00-00:00 for 24 h), and so
  does a window that leaves less than a minute a day (00:00-23:59:59).

Interval tests are closed (`<=`/`>=`), matching the JSONPath comparisons they stand for. Daily windows are
matched in local wall-clock time; in zones with DST an interval crossing a transition is judged on wall
time (the network default, Asia/Kolkata, has no DST).
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

DAY = 86400

_DT_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_TOD_RE = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$")
_DUR_RE = re.compile(
    r"^(-)?P(?:(\d+(?:[.,]\d+)?)Y)?(?:(\d+(?:[.,]\d+)?)M)?(?:(\d+(?:[.,]\d+)?)W)?(?:(\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?:(\d+(?:[.,]\d+)?)H)?(?:(\d+(?:[.,]\d+)?)M)?(?:(\d+(?:[.,]\d+)?)S)?)?$"
)
# Calendar units as fixed lengths: a TTL or validity "P1M" means about a month; 30 days is the usual reading.
_DUR_UNITS = (365 * DAY, 30 * DAY, 7 * DAY, DAY, 3600, 60, 1)


@lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    return ZoneInfo(name)


def as_tz(tz: "tzinfo | str | None") -> tzinfo:
    """A tzinfo from a tzinfo, a zone name, or None (UTC)."""
    if tz is None:
        return timezone.utc
    if isinstance(tz, str):
        return _zone(tz)
    return tz


def _offset_s(text: str | None) -> int | None:
    if not text:
        return None
    if text in ("Z", "z"):
        return 0
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError("offset out of range")
    return sign * (hours * 3600 + minutes * 60)


def _frac(text: str | None) -> float:
    return float(text) if text else 0.0


# The usual spelling (RFC 3339 in UTC: every context.timestamp, most published dates), read without the general
# pattern, offsets and time zones; anything else, or a date it refuses, goes the general way.
_UTC_INSTANT = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?Z")


def parse_instant(s: object, tz: "tzinfo | str | None") -> float | None:
    """Epoch seconds of an ISO-8601 date or date-time; None if `s` is not one.

    With `Z`/offset: that instant. Without: wall-clock time in `tz`. A bare date is local midnight.
    """
    m = _UTC_INSTANT.fullmatch(s) if type(s) is str else None
    if m is not None:
        y, mo, d, hh, mi, ss, frac = m.groups()
        try:
            t = datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss), tzinfo=timezone.utc).timestamp()
        except ValueError:      # not a date, or 24:00 / a leap second: the general reading decides
            return _parse_instant(s, tz)
        return t + float(frac) if frac else t
    return _parse_instant(s, tz)


def _parse_instant(s: object, tz: "tzinfo | str | None") -> float | None:
    """`parse_instant` for any spelling."""
    if not isinstance(s, str) or len(s) > 64:
        return None
    m = _DT_RE.match(s.strip())
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    try:
        hour, minute, sec = int(hh or 0), int(mi or 0), int(ss or 0)
        extra = 0
        if hour == 24 and minute == 0 and sec == 0 and not frac:  # ISO end-of-day
            hour, extra = 0, DAY
        if sec == 60:  # leap second: the instant just before the next minute
            sec, frac = 59, ".999"
        dt = datetime(int(y), int(mo), int(d), hour, minute, sec)
        offset = _offset_s(off)
    except ValueError:
        return None
    if offset is None:
        dt = dt.replace(tzinfo=as_tz(tz))
    else:
        dt = dt.replace(tzinfo=timezone(timedelta(seconds=offset)))
    return dt.timestamp() + extra + _frac(frac)


def parse_time_of_day(s: object) -> tuple[int, int | None] | None:
    """`"06:00:00"` -> (21600, None); `"13:00:00Z"` -> (46800, 0); `"18:30:00+05:30"` -> (66600, 19800).

    Seconds are wall-clock seconds in the given offset (0..86400; `24:00:00` is 86400). None if not a time.
    """
    if not isinstance(s, str) or len(s) > 32:
        return None
    m = _TOD_RE.match(s.strip())
    if not m:
        return None
    hh, mi, ss, _frac_s, off = m.groups()
    hour, minute, sec = int(hh), int(mi), int(ss or 0)
    if hour == 24 and minute == 0 and sec == 0:
        secs = DAY
    elif hour > 23 or minute > 59 or sec > 60:
        return None
    else:
        secs = hour * 3600 + minute * 60 + min(sec, 59)
    try:
        return secs, _offset_s(off)
    except ValueError:
        return None


# Instants whose local date exists in every zone (datetime covers years 1..9999): offsets of instants
# outside are taken at the nearest end (zone rules are constant that far out), so no date overflows.
_MIN_INSTANT = -62135596800.0 + 2 * DAY     # 0001-01-03T00:00:00Z
_MAX_INSTANT = 253402300799.0 - 2 * DAY     # 9999-12-29T23:59:59Z


def _clamped(instant: float) -> float:
    if instant != instant:  # NaN
        return 0.0
    return min(max(instant, _MIN_INSTANT), _MAX_INSTANT)


def _offset_at(instant: float, tz: "tzinfo | str | None") -> float:
    """UTC offset (seconds) of `tz` at `instant`; defined for any float."""
    off = datetime.fromtimestamp(_clamped(instant), as_tz(tz)).utcoffset()
    return off.total_seconds() if off is not None else 0.0


def tz_offset_s(tz: "tzinfo | str | None", at: float | None = None) -> int:
    """UTC offset of `tz` in seconds at instant `at` (default: now)."""
    return int(_offset_at(time.time() if at is None else at, tz))


def daily_seconds_local(s: object, tz: "tzinfo | str | None", at: float | None = None) -> int | None:
    """A time of day as seconds since local midnight in `tz` (wrapping), or None.

    `"06:00:00"` is already local. `"13:00:00Z"` in Asia/Kolkata is 18:30 local; `"20:00:00Z"` wraps to
    01:30. `24:00:00` stays 86400 (end of day) when it carries no offset.
    """
    parsed = parse_time_of_day(s)
    if parsed is None:
        return None
    secs, offset = parsed
    if offset is None:
        return secs
    return (secs - offset + tz_offset_s(tz, at)) % DAY


_last_local: tuple[float, object, int] = (math.nan, None, 0)


def local_seconds(instant: float, tz: "tzinfo | str | None") -> int:
    """Seconds since local midnight of an instant in `tz`. The last answer is kept: one request asks it for every
    offer with a daily window, always with the same `now` (docs/decisions.md §G)."""
    global _last_local
    last = _last_local
    if last[0] == instant and last[1] is tz:
        return last[2]
    if _MIN_INSTANT <= instant <= _MAX_INSTANT:
        dt = datetime.fromtimestamp(instant, as_tz(tz))
        secs = dt.hour * 3600 + dt.minute * 60 + dt.second
        _last_local = (instant, tz, secs)
        return secs
    if instant != instant or instant in (math.inf, -math.inf):
        return 0
    return int((instant + _offset_at(instant, tz)) % DAY)


def parse_duration(s: object) -> float | None:
    """ISO-8601 duration in seconds (`PT30S`, `P1D`, `P1M` = 30 days, `P1Y` = 365 days); None if invalid."""
    if not isinstance(s, str) or len(s) > 64:
        return None
    m = _DUR_RE.match(s.strip().upper())
    if not m or s.strip().upper() in ("P", "PT", "-P") or s.strip().upper().endswith("T"):
        return None
    sign, *parts = m.groups()
    total = 0.0
    for part, unit in zip(parts, _DUR_UNITS):
        if part:
            total += float(part.replace(",", ".")) * unit
    return -total if sign else total


# --- daily windows ------------------------------------------------------------------------------------
# Daily windows are matched on "wall seconds": an instant plus its UTC offset in the network zone, i.e.
# seconds since 1970-01-01 00:00 on the local wall clock. Occurrence k of a window starts at k*DAY + start.
# Hot paths precompute the wall seconds of a query once and call the `*_wall` functions per document.


def wall_seconds(instant: float, tz: "tzinfo | str | None") -> float:
    """Local wall-clock seconds since 1970-01-01T00:00 (local) of an instant in `tz`."""
    return instant + _offset_at(instant, tz)


FULL_DAY_GAP = 60  # a window leaving at most this gap per day ("00:00-23:59:59") is open all day


def start_span(win: tuple[int, int]) -> tuple[int, int]:
    """(start, length) of a daily window; wrapping windows run past midnight; start == end is a full day."""
    start, end = win
    span = end - start if end > start else end + DAY - start
    return start, (DAY if span >= DAY - FULL_DAY_GAP else span)


def is_full_day(win: tuple[int, int]) -> bool:
    return start_span(win)[1] >= DAY


def overlaps_wall(win: tuple[int, int], ls: float, le: float) -> bool:
    """Does some occurrence of the daily window meet the wall interval [ls, le]? (closed)"""
    if le < ls:
        return False
    start, span = start_span(win)
    if span >= DAY or le - ls >= DAY:
        return True
    d, last = int(ls // DAY) - 1, int(le // DAY)
    while d <= last:
        os = d * DAY + start
        if os <= le and os + span >= ls:
            return True
        d += 1
    return False


def contains_wall(win: tuple[int, int], ls: float, le: float) -> bool:
    """Does one occurrence of the daily window contain the whole wall interval [ls, le]?"""
    if le < ls:
        return False
    start, span = start_span(win)
    if span >= DAY:
        return True
    d = int(ls // DAY)
    for k in (d - 1, d):
        os = k * DAY + start
        if os <= ls and os + span >= le:
            return True
    return False


def within_wall(win: tuple[int, int], ws: float, we: float) -> bool:
    """Does some occurrence of the daily window lie entirely inside the wall interval [ws, we]?"""
    if we < ws:
        return False
    start, span = start_span(win)
    if span >= DAY:
        return we - ws >= DAY
    d, last = int(ws // DAY) - 1, int(we // DAY)
    while d <= last:
        os = d * DAY + start
        if os >= ws and os + span <= we:
            return True
        d += 1
    return False


def point_in_wall(secs: int, ws: float, we: float) -> bool:
    """Does the wall interval [ws, we] contain the local time of day `secs` on some day?"""
    if we < ws:
        return False
    if we - ws >= DAY:
        return True
    d, last = int(ws // DAY) - 1, int(we // DAY)
    while d <= last:
        if ws <= d * DAY + secs <= we:
            return True
        d += 1
    return False


def daily_overlaps(win: tuple[int, int], q_start: float, q_end: float, tz: "tzinfo | str | None") -> bool:
    """Does the daily window (local seconds) overlap the instant interval [q_start, q_end] on some day?"""
    return overlaps_wall(win, wall_seconds(q_start, tz), wall_seconds(q_end, tz))


def daily_contains(win: tuple[int, int], q_start: float, q_end: float, tz: "tzinfo | str | None") -> bool:
    """Does one occurrence of the daily window contain the whole instant interval [q_start, q_end]?"""
    return contains_wall(win, wall_seconds(q_start, tz), wall_seconds(q_end, tz))


def daily_within(win: tuple[int, int], w_start: float, w_end: float, tz: "tzinfo | str | None") -> bool:
    """Does some occurrence of the daily window lie entirely inside the instant interval [w_start, w_end]?

    (A time-of-day query such as "11:30-14:30" contained in an availability window given as instants.)
    """
    return within_wall(win, wall_seconds(w_start, tz), wall_seconds(w_end, tz))


def daily_point_in(secs: int, w_start: float, w_end: float, tz: "tzinfo | str | None") -> bool:
    """Does the instant interval [w_start, w_end] contain the local time of day `secs` on some day?"""
    return point_in_wall(secs, wall_seconds(w_start, tz), wall_seconds(w_end, tz))


def tod_overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Do two daily windows overlap (closed, circular)?"""
    a0, alen = start_span(a)
    b0, blen = start_span(b)
    if alen >= DAY or blen >= DAY:
        return True
    # b's occurrence starting the same day, compared with a's occurrences of the day before, same, after
    a1, b1 = a0 + alen, b0 + blen
    return (a0 <= b1 and a1 >= b0) or (a0 - DAY <= b1 and a1 - DAY >= b0) or (a0 + DAY <= b1 and a1 + DAY >= b0)


def tod_contains(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    """Does daily window `outer` contain daily window `inner` (circular)?"""
    o0, olen = start_span(outer)
    if olen >= DAY:
        return True
    i0, ilen = start_span(inner)
    if ilen >= DAY:
        return False
    i1 = i0 + ilen
    for k in (-DAY, 0, DAY):
        if o0 + k <= i0 and o0 + k + olen >= i1:
            return True
    return False


def tod_has(win: tuple[int, int], secs: int) -> bool:
    """Is the local time of day `secs` inside the daily window (closed, wrapping)?"""
    start, span = start_span(win)
    if span >= DAY:
        return True
    end = win[1]
    if start < end:
        return start <= secs <= end
    return secs >= start or secs <= end


def in_daily(win: tuple[int, int], instant: float, tz: "tzinfo | str | None") -> bool:
    """Is the instant inside the daily window (local wall time)? (Offer lunch-hour promos.)"""
    return tod_has(win, local_seconds(instant, tz))


def rfc3339(instant: float | None = None) -> str:
    """UTC timestamp with milliseconds and `Z` (2026-01-04T07:31:02.123Z), for context.timestamp."""
    t = time.time() if instant is None else instant
    dt = datetime.fromtimestamp(min(max(t, _MIN_INSTANT - 2 * DAY), _MAX_INSTANT + 2 * DAY) if t == t else 0.0,
                                timezone.utc)
    if dt.year >= 1000:     # isoformat pads years to 4 digits (strftime does not): the same text, 3x cheaper
        return dt.isoformat(timespec="milliseconds")[:-6] + "Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
