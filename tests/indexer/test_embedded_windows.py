"""The embedded index decides a filter's availability-window conjunct (`WindowTerm`) for many items at once
(`indexer.embedded.windows`, `cds.core.timevec`): wherever it decides, the answer is the compiled filter's own,
windows crossing midnight, full days and the configured time zone included; and a search using it answers as
`brute_force` does."""

from __future__ import annotations

import asyncio
import random
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from cds.core import matching, spatial
from cds.core.documents import CatalogMeta, CatalogRecord, ItemDoc
from cds.core.exactness import covered
from cds.core.filters import compile_filter
from cds.core.query import Query
from indexer.embedded.windows import MAX_DAILY, MAX_INSTANTS, WindowSets
from tests.harness import iso
from tests.indexer.test_embedded_store import keys, populated

NOW = 1_796_342_400.0            # 2026-12-04T00:00:00Z
DAY = 86400
ZONES = ["Asia/Kolkata", "UTC", "America/New_York", "Pacific/Chatham"]
AT = "@.beckn:availabilityWindow"
A = "@.beckn:itemAttributes."


def expression(x: float, y: float, form: str) -> str:
    if form == "sibling":         # DEG: sibling start/end tests on the window list mean one window
        win = f"{AT}[*].schema:startTime <= '{iso(x)}' && {AT}[*].schema:endTime >= '{iso(y)}'"
    else:
        win = f"{AT}[?(@.schema:startTime <= '{iso(x)}' && @.schema:endTime >= '{iso(y)}')]"
    if form == "typed":
        return f"$[?({A}connectorType == 'CCS2' && {win})]"
    if form == "strict":          # a conjunct that is no pushdown: the matcher still runs where the window holds
        return f"$[?({win} && {A}maxPowerKW > 22)]"
    return f"$[?({win})]"


hours = st.integers(-3 * 24, 3 * 24).map(lambda h: NOW + h * 3600)
# half hours meet the windows' ends exactly in every zone here (closed tests: the boundaries matter)
instant = st.one_of(st.integers(-6 * 48, 6 * 48).map(lambda k: NOW + k * 1800),
                    st.integers(int(NOW) - 4 * DAY, int(NOW) + 4 * DAY).map(float))
tod = st.one_of(st.sampled_from([0, 86340, 86399, DAY]), st.integers(0, 48).map(lambda k: k * 1800),
                st.integers(0, DAY))
# (daily windows: start > end crosses midnight, start == end is the whole day)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone=st.sampled_from(ZONES), x=instant, form=st.sampled_from(["plain", "sibling", "typed"]), data=st.data())
def test_window_sets_decide_as_the_compiled_filter(zone, x, form, data):
    # x >= y: windows overlapping [y, x]; x < y: windows containing [x, y] (often a short one)
    y = data.draw(st.one_of(instant, st.integers(-8, 8).map(lambda k: x + k * 1800)))
    f = compile_filter(expression(x, y, form), tz=zone, status_fresh_s=900)
    term = f.window
    assert term is not None and term.rest_is_pushdowns
    # windows ending or starting just where the queried interval does, often (closed tests: boundaries matter)
    ends = st.one_of(instant, st.sampled_from([x, y]))
    tods = st.one_of(tod, st.sampled_from([int(term.xw % DAY), int(term.yw % DAY)]))
    kinds = data.draw(st.sampled_from(["instants", "daily", "both"]))     # (one kind alone: none hides the other)
    windows = data.draw(st.lists(st.tuples(ends, ends).map(sorted).map(tuple), max_size=MAX_INSTANTS + 1)
                        if kinds != "daily" else st.just([]))
    daily = data.draw(st.lists(st.tuples(tods, tods), max_size=MAX_DAILY + 1) if kinds != "instants" else st.just([]))
    doc = ItemDoc(bpp_id="b", catalog_id="c", item_id="i", connector_type="CCS2", windows=windows,
                  daily_windows=daily)
    want = f.predicate(doc, None, NOW)
    sets = WindowSets()
    row = sets.add(windows, daily)
    yes, no = sets.meet(np.array([row, 0]), term)
    assert not yes[1] and no[1]                       # no window at all: surely no match
    if yes[0]:
        assert want
    if no[0]:
        assert not want
    if len(windows) <= MAX_INSTANTS and len(daily) <= MAX_DAILY:
        assert yes[0] != no[0]                        # every window kept: decided either way


def test_a_window_of_centuries_makes_no_bound_per_day():
    """An interval of a day or more meets every daily window: no bound is made per day of it (from 1970 to 9999
    that was millions of them, built on the loop before the search's first slice)."""
    term = compile_filter(expression(253402300799.0, 0.0, "plain"), tz="Asia/Kolkata", status_fresh_s=900).window
    assert term.bounds.any_meets and len(term.bounds.a) == len(term.bounds.b) == 4
    sets = WindowSets()
    rows = np.array([sets.add([], [(6 * 3600, 22 * 3600)]), sets.add([(NOW, NOW + 60)], []), 0])
    yes, no = sets.meet(rows, term)
    assert yes.tolist() == [True, True, False] and no.tolist() == [False, False, True]


def test_terms_only_for_instant_patterns_and_conjuncts():
    def term(expr: str):
        return compile_filter(expr, tz="Asia/Kolkata", status_fresh_s=900).window

    x, y = NOW + 7200, NOW + 3600
    t = term(expression(x, y, "typed"))
    assert (t.x, t.y, t.rest_is_pushdowns) == (x, y, True)
    assert term(expression(x, y, "sibling")).rest_is_pushdowns
    win = f"{AT}[?(@.schema:startTime <= '{iso(x)}' && @.schema:endTime >= '{iso(y)}')]"
    # other conjuncts that are not the Query's pushdowns: the term still excludes, never decides a match
    assert not term(f"$[?({win} && {A}maxPowerKW > 50)]").rest_is_pushdowns
    assert not term(f"$.catalogs[?(@.beckn:bppId == 'b')].items[?({win})]").rest_is_pushdowns
    assert term(f"$[?({A}connectorType == 'CCS2' && {A}maxPowerKW >= 50 && {win})]").rest_is_pushdowns
    # not one conjunct of the item filter, or not instants: no term
    assert term(f"$[?({win} || {A}maxPowerKW >= 50)]") is None
    assert term(f"$[?(!({win}))]") is None
    assert term(f"$[?({AT}[?(@.schema:startTime <= '10:00:00' && @.schema:endTime >= '09:00:00')])]") is None
    assert term(f"$[?({AT}[?(@.schema:startTime <= '{iso(x)}' && @.schema:endTime >= '{iso(y)}' "
                f"&& @.schema:startTime >= '{iso(y - DAY)}')])]") is None
    assert term(f"$[?({A}connectorType == 'CCS2')]") is None


def test_window_sets_are_shared_and_released():
    sets = WindowSets()
    a = sets.add([(NOW, NOW + 3600)], [])
    assert sets.add([(NOW, NOW + 3600)], []) == a and len(sets) == 2
    b = sets.add([], [(79200, 21600)])
    assert sets.add([], []) == 0 and len(sets) == 3
    for r in (a, a, b, 0):
        sets.release(r)
    assert len(sets) == 1
    assert sets.add([], [(0, 0)]) in (a, b)           # a freed row is reused


def _item(k: int, r: random.Random) -> ItemDoc:
    kind = k % 4
    windows = [(NOW + h * 3600, NOW + (h + r.randint(1, 14)) * 3600)
               for h in r.sample(range(-24, 72), r.randint(1, 3))] if kind == 1 else []
    daily = [(r.randint(0, 23) * 3600, r.randint(0, 23) * 3600)] if kind == 2 else []
    if kind == 3:
        windows, daily = [(NOW - DAY, NOW + 2 * DAY)] * 6, [(0, 0)] * 3       # beyond what a row keeps
    return ItemDoc(bpp_id="b", catalog_id="c", item_id=f"i{k}", connector_type=["CCS2", "Type2"][k % 2],
                   max_kw=r.choice([None, 7.4, 22.0, 60.0]), lon=77.59 + r.gauss(0, 0.05), lat=12.97 + r.gauss(0, 0.05), windows=windows, daily_windows=daily)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), x=hours, y=hours, form=st.sampled_from(["plain", "sibling", "typed", "strict"]),
       radius=st.sampled_from([None, 3000.0, 20_000.0]), limit=st.integers(1, 50))
def test_window_queries_equal_brute_force(seed, x, y, form, radius, limit):
    r = random.Random(seed)
    meta = CatalogMeta(bpp_id="b", catalog_id="c", published_at=NOW - 10, is_active=True, item_count=120, raw=b"{}")
    rec = CatalogRecord(meta=meta, items=[_item(k, r) for k in range(120)])
    f = compile_filter(expression(x, y, form), tz="Asia/Kolkata", status_fresh_s=900)
    centre = Point(77.59, 12.97)
    q = Query(spatial=(spatial.prepare("dwithin", centre, radius),) if radius else (),
              terms=f.pushdowns.terms, ranges=f.pushdowns.ranges, predicate=f.predicate,
              predicate_is_pushdowns=covered(f.ast), origin=(centre.x, centre.y) if radius else None, limit=limit)

    async def run():
        with tempfile.TemporaryDirectory() as d:
            store = await populated(Path(d), [rec], [], [])
            try:
                assert keys(await store.search(q, NOW)) == keys(matching.brute_force(q, [rec], NOW))
                await store.delete_catalog("b", "c")
                assert store.index_size()["window_sets"] == 1      # every row released
            finally:
                await store.close()
    asyncio.run(run())
