"""cds.core.timeutil: instants, times of day, durations and daily-window interval logic.

Interval functions are checked against a brute-force oracle that samples wall-clock time every 30 s.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.core import timeutil as tu
IST = ZoneInfo("Asia/Kolkata")
H = 3600


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def ist(*args: int) -> float:
    return datetime(*args, tzinfo=IST).timestamp()


# --- parsing ---------------------------------------------------------------------------------------------


def test_instants_with_offsets_are_the_same_moment() -> None:
    z = tu.parse_instant("2026-01-04T08:00:00Z", "Asia/Kolkata")
    assert z == utc(2026, 1, 4, 8)
    assert tu.parse_instant("2026-01-04T13:30:00+05:30", "UTC") == z
    assert tu.parse_instant("2026-01-04T13:30:00+0530", "UTC") == z
    assert tu.parse_instant("2026-01-04T03:00:00-05:00", IST) == z
    assert tu.parse_instant("2026-01-04t08:00:00.250z", IST) == z + 0.25


def test_instant_without_offset_is_local_network_time() -> None:
    assert tu.parse_instant("2026-01-04T13:30:00", "Asia/Kolkata") == utc(2026, 1, 4, 8)
    assert tu.parse_instant("2026-01-04T13:30:00", "UTC") == utc(2026, 1, 4, 13, 30)
    assert tu.parse_instant("2026-01-04", IST) == ist(2026, 1, 4)
    assert tu.parse_instant("2026-01-04T24:00:00Z", IST) == utc(2026, 1, 5)


@pytest.mark.parametrize("bad", ["06:00:00", "2026-13-01T00:00:00Z", "2026-01-32", "yesterday", "", None, 5,
                                 "2026-01-04T25:00:00Z", "2026-01-04T10:00:00+25:00", "x" * 100])
def test_not_instants(bad: object) -> None:
    assert tu.parse_instant(bad, IST) is None


def test_time_of_day_forms() -> None:
    assert tu.parse_time_of_day("06:00:00") == (6 * H, None)
    assert tu.parse_time_of_day("06:00") == (6 * H, None)
    assert tu.parse_time_of_day("13:00:00Z") == (13 * H, 0)
    assert tu.parse_time_of_day("18:30:00+05:30") == (18 * H + 1800, 19800)
    assert tu.parse_time_of_day("18:30:00-03:00") == (18 * H + 1800, -3 * H)
    assert tu.parse_time_of_day("24:00:00") == (24 * H, None)
    for bad in ("25:00:00", "6:00", "12:61", "2026-01-04T06:00:00Z", "noon", None):
        assert tu.parse_time_of_day(bad) is None


def test_daily_seconds_local_converts_offsets_into_network_zone() -> None:
    assert tu.daily_seconds_local("06:00:00", IST) == 6 * H
    assert tu.daily_seconds_local("13:00:00Z", IST) == 18 * H + 1800          # 13:00 UTC = 18:30 IST
    assert tu.daily_seconds_local("20:00:00Z", IST) == 1 * H + 1800           # wraps past midnight
    assert tu.daily_seconds_local("18:30:00+05:30", IST) == 18 * H + 1800
    assert tu.daily_seconds_local("18:30:00+05:30", "UTC") == 13 * H
    assert tu.daily_seconds_local("bogus", IST) is None


@pytest.mark.parametrize("text,seconds", [
    ("PT30S", 30), ("P1D", 86400), ("P1M", 30 * 86400), ("PT1H30M", 5400), ("P1W", 7 * 86400),
    ("P1DT2H", 93600), ("PT0.5S", 0.5), ("P1Y", 365 * 86400), ("pt10m", 600),
])
def test_durations(text: str, seconds: float) -> None:
    assert tu.parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["P", "PT", "30S", "P1H", "P1DT", "PT1D", "", None, "1 day"])
def test_bad_durations(bad: object) -> None:
    assert tu.parse_duration(bad) is None


# --- daily windows: worked examples -----------------------------------------------------------------------


def test_daily_window_overlaps_instant_interval_across_zones() -> None:
    # the UBC time-range query 08:00Z..20:00Z is 13:30..01:30 IST
    q = (utc(2026, 1, 4, 8), utc(2026, 1, 4, 20))
    assert tu.daily_overlaps((6 * H, 22 * H), *q, IST)
    assert not tu.daily_overlaps((2 * H, 5 * H), *q, IST)
    assert tu.daily_overlaps((1 * H, 2 * H), *q, IST)          # 01:00-02:00 IST on the next day
    assert not tu.daily_contains((6 * H, 22 * H), *q, IST)      # crosses midnight, window closes at 22:00


def test_wrapping_windows() -> None:
    night = (22 * H, 6 * H)
    assert tu.daily_overlaps(night, ist(2026, 1, 4, 5), ist(2026, 1, 4, 5, 30), IST)
    assert not tu.daily_overlaps(night, ist(2026, 1, 4, 10), ist(2026, 1, 4, 11), IST)
    assert tu.daily_contains(night, ist(2026, 1, 4, 23), ist(2026, 1, 5, 5), IST)
    assert not tu.daily_contains(night, ist(2026, 1, 4, 21), ist(2026, 1, 5, 5), IST)
    assert tu.in_daily(night, ist(2026, 1, 4, 23, 59), IST)
    assert not tu.in_daily(night, ist(2026, 1, 4, 12), IST)
    assert tu.tod_has(night, 0) and tu.tod_has(night, 22 * H) and not tu.tod_has(night, 7 * H)


def test_full_day_windows() -> None:
    for win in ((0, 0), (0, 86400), (5 * H, 5 * H), (0, 86399), (6 * H, 6 * H - 60)):
        assert tu.daily_contains(win, ist(2026, 1, 4, 20), ist(2026, 1, 5, 3), IST)
        assert tu.tod_contains(win, (23 * H, 2 * H))


def test_daily_within_and_point() -> None:
    # 11:30-14:30 local inside an availability window given as instants (10:30-15:30 IST)
    assert tu.daily_within((11 * H + 1800, 14 * H + 1800), utc(2026, 1, 4, 5), utc(2026, 1, 4, 10), IST)
    assert not tu.daily_within((11 * H + 1800, 14 * H + 1800), utc(2026, 1, 4, 7), utc(2026, 1, 4, 8), IST)
    assert tu.daily_point_in(12 * H, utc(2026, 1, 4, 5), utc(2026, 1, 4, 10), IST)
    assert not tu.daily_point_in(20 * H, utc(2026, 1, 4, 5), utc(2026, 1, 4, 10), IST)


# --- daily windows: brute-force oracle ----------------------------------------------------------------------

STEP = 30  # seconds; windows and queries are whole minutes, so a 30 s grid also sees one-minute gaps
BASE = ist(2026, 3, 1)


def _local(t: float) -> int:
    d = datetime.fromtimestamp(t, IST)
    return d.hour * 3600 + d.minute * 60 + d.second


def _in(win: tuple[int, int], secs: int) -> bool:
    s, e = win
    if (e - s) % 86400 == 0 or (e - s) % 86400 >= 86400 - 60:   # full day, or "00:00-23:59"
        return True
    return s <= secs <= e if s < e else (secs >= s or secs <= e)


def _grid(a: float, b: float) -> list[float]:
    n = int((b - a) // STEP)
    return [a + i * STEP for i in range(n + 1)] + ([b] if (b - a) % STEP else [])


minutes = st.integers(0, 1439).map(lambda m: m * 60)
windows = st.tuples(minutes, minutes)
queries = st.tuples(st.integers(0, 3 * 1440), st.integers(0, 1600)).map(
    lambda t: (BASE + t[0] * 60, BASE + (t[0] + t[1]) * 60))


@settings(max_examples=150, deadline=None)
@given(windows, queries)
def test_overlap_matches_sampling(win: tuple[int, int], q: tuple[float, float]) -> None:
    expected = any(_in(win, _local(t)) for t in _grid(*q))
    assert tu.daily_overlaps(win, q[0], q[1], IST) == expected


@settings(max_examples=150, deadline=None)
@given(windows, queries)
def test_contains_matches_sampling(win: tuple[int, int], q: tuple[float, float]) -> None:
    # inside one occurrence <=> every sampled instant is inside the window (the 30 s grid sees any gap)
    expected = all(_in(win, _local(t)) for t in _grid(*q))
    assert tu.daily_contains(win, q[0], q[1], IST) == expected


@settings(max_examples=150, deadline=None)
@given(windows, windows)
def test_tod_overlap_and_contains_match_sets(a: tuple[int, int], b: tuple[int, int]) -> None:
    grid = range(0, 86400, STEP)
    sa = {t for t in grid if _in(a, t)}
    sb = {t for t in grid if _in(b, t)}
    assert tu.tod_overlaps(a, b) == bool(sa & sb)
    if not tu.is_full_day(b):
        assert tu.tod_contains(a, b) == (sb <= sa)


def test_dst_zone_wall_clock() -> None:
    # in a DST zone daily windows follow the wall clock: 09:00-10:00 local in summer is 07:00-08:00 UTC
    berlin = ZoneInfo("Europe/Berlin")
    day = datetime(2026, 7, 1, tzinfo=timezone.utc)
    assert tu.daily_overlaps((9 * H, 10 * H), (day + timedelta(hours=7, minutes=30)).timestamp(),
                             (day + timedelta(hours=7, minutes=45)).timestamp(), berlin)
    assert not tu.daily_overlaps((9 * H, 10 * H), (day + timedelta(hours=8, minutes=30)).timestamp(),
                                 (day + timedelta(hours=8, minutes=45)).timestamp(), berlin)


def _occurrences(win: tuple[int, int], first: datetime, last: datetime):
    """Occurrences of a daily window as naive local datetimes, by calendar arithmetic."""
    s, e = win
    span = e - s if e > s else e + 86400 - s
    day = datetime(first.year, first.month, first.day) - timedelta(days=1)
    while day <= last:
        start = day + timedelta(seconds=s)
        yield start, start + timedelta(seconds=span)
        day += timedelta(days=1)


def _naive(t: float) -> datetime:
    return datetime.fromtimestamp(t, IST).replace(tzinfo=None)


@settings(max_examples=150, deadline=None)
@given(windows, queries)
def test_within_and_point_match_calendar_arithmetic(win: tuple[int, int], q: tuple[float, float]) -> None:
    ls, le = _naive(q[0]), _naive(q[1])
    if _in(win, (win[1] + 30) % 86400):   # full-day window
        expected_within = q[1] - q[0] >= 86400
    else:
        expected_within = any(a >= ls and b <= le for a, b in _occurrences(win, ls, le))
    assert tu.daily_within(win, q[0], q[1], IST) == expected_within
    expected_point = any(_local(t) == win[0] for t in _grid(*q))
    assert tu.daily_point_in(win[0], q[0], q[1], IST) == expected_point


def test_rfc3339_is_utc_with_milliseconds_truncated_everywhere_in_range():
    from datetime import datetime, timezone

    from cds.core.timeutil import rfc3339
    for t in (0.0, 0.9999, 1_700_000_000.123456, 1_700_000_059.9996, 253402300799.0, -62135596800.0 + 3 * 86400,
              -62135596800.0 + 1e9 + 0.5, -1e18, 1e18):
        dt = datetime.fromtimestamp(min(max(t, -62135596800.0), 253402300799.0), timezone.utc)
        assert rfc3339(t) == dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    assert rfc3339(1_700_000_000.123456) == "2023-11-14T22:13:20.123Z"


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
       st.sampled_from(["", ".5", ".123", ".000001", ".123456789"]), st.sampled_from(["UTC", "Asia/Kolkata"]))
def test_a_utc_instant_reads_as_the_general_parser_reads_it(dt, frac, zone):
    ts = dt.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + frac + "Z"
    assert tu.parse_instant(ts, zone) == tu._parse_instant(ts, zone)


@pytest.mark.parametrize("ts", ["2026-02-30T10:00:00Z", "2026-12-04T24:00:00Z", "2026-12-31T23:59:60Z",
                                "0000-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "2026-12-04T10:00:00+05:30",
                                "2026-12-04 10:00:00Z", "2026-12-04T10:00Z", " 2026-12-04T10:00:00Z", "2026-12-04"])
def test_other_instants_read_as_the_general_parser_reads_them(ts):
    for zone in ("UTC", "Asia/Kolkata"):
        assert tu.parse_instant(ts, zone) == tu._parse_instant(ts, zone)
    assert tu.parse_instant(None, "UTC") is None and tu.parse_instant(20261204, "UTC") is None
