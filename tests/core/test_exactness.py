"""cds.core.exactness: a filter said to be covered selects exactly the items its pushdowns pass."""

from __future__ import annotations

import json
import math

from hypothesis import event, given, settings
from hypothesis import strategies as st

from cds.core.documents import CatalogMeta, ItemDoc
from cds.core.exactness import covered
from cds.core.filters import compile_filter
from cds.core.matching import pushdowns_pass
from cds.core.query import Query

NOW = 1_767_510_000.0
META = CatalogMeta(bpp_id="bpp", catalog_id="cat")
A = "@.beckn:itemAttributes."


def _compiled(expr: str):  # type: ignore[no-untyped-def]
    return compile_filter(expr, tz="Asia/Kolkata", status_fresh_s=900)


def _covered(expr: str) -> bool:
    return covered(_compiled(expr).ast)


def test_typed_conjunctions_are_covered() -> None:
    assert _covered(f"$[?({A}connectorType == 'CCS2' && {A}maxPowerKW >= 50)]")
    assert _covered(f"$[?({A}connectorType == 'ccs2')]")
    assert _covered(f"$[?({A}maxPowerKW <= 22 && {A}maxPowerKW == 7 && {A}minPowerKW >= 3)]")
    assert _covered(f"$[?({A}connectorType in ['CCS2', 'Type2'] && {A}vehicleType == '2-WHEELER')]")
    assert _covered(f"$[?(50 <= {A}maxPowerKW)]")
    assert _covered("$[?(@.beckn:id == 'IND*ABC')]")


def test_others_are_not() -> None:
    for cond in (
        f"{A}maxPowerKW > 50",                                           # the range is inclusive
        f"{A}maxPowerKW < 50",
        f"{A}maxPowerKW != 50",
        f"{A}maxPowerKW >= '50'",                                        # a string against a number
        f"{A}connectorType == 5",
        f"{A}connectorType != 'CCS2'",
        f"{A}vehicleType == '2-WHEELER' && {A}vehicleType == '4-WHEELER'",  # two elements may meet them
        f"{A}connectorType == 'CCS2' || {A}maxPowerKW >= 50",
        f"!({A}connectorType == 'CCS2')",
        f"{A}stationStatus == 'AVAILABLE'",                              # status: not pushed down
        f"{A}reservationSupported == true",
        "@.beckn:offers[?(@.price.value <= 10)]",
        f"{A}somethingElse == 'x'",
    ):
        assert not _covered(f"$[?({cond})]"), cond
    assert not _covered("$.catalogs[?(@.bppId == 'b')].items[?(@.beckn:id == 'x')]")
    assert not _covered("$[*]")


# --- property: covered => predicate == pushdowns on every item ----------------------------------------

# Few values, so that items often hold exactly a filter's literal (or its other spelling).
_STR_FIELDS = {"connectorType": ("connector_type", ["CCS2", "Type2", "ccs2"])}
_LIST_FIELDS = {"vehicleType": ("vehicle_types", ["2-WHEELER", "4-WHEELER", "2-wheeler"])}
_NUM_FIELDS = {"maxPowerKW": "max_kw"}
_NUMBERS = [0, 7, 7.0, 7.5, 50, 1e300]

literal = st.one_of(st.sampled_from(["CCS2", "ccs2", "Type2", "2-WHEELER", "2-wheeler", "4-WHEELER", "7", ""]),
                    st.sampled_from(_NUMBERS), st.booleans(), st.none())


@st.composite
def conjunct(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(sorted({**_STR_FIELDS, **_LIST_FIELDS, **_NUM_FIELDS})))
    path = f"{A}{name}"
    # mostly literals of the field's own kind (else most filters are trivially false or not covered)
    own = st.sampled_from(_NUMBERS) if name in _NUM_FIELDS else st.sampled_from(
        ({**_STR_FIELDS, **_LIST_FIELDS})[name][1] + ["4-WHEELER", "Type2"])
    lit = draw(st.one_of(own, own, own, literal))
    if name not in _NUM_FIELDS and draw(st.integers(0, 3)) == 0:
        return f"{path} in {json.dumps(draw(st.lists(st.one_of(own, literal), max_size=3)))}"
    op = draw(st.sampled_from(["==", "==", ">=", ">=", "<=", "<=", "!=", "<", ">"]))
    text = json.dumps(lit).replace('"', "'")
    return f"{text} {_FLIP[op]} {path}" if draw(st.booleans()) else f"{path} {op} {text}"


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}

number = st.sampled_from(_NUMBERS + [None, math.nan, 6.999, 50.5])


@st.composite
def item_doc(draw: st.DrawFn) -> ItemDoc:
    kw: dict = {}
    for _, (attr, vals) in _STR_FIELDS.items():
        kw[attr] = draw(st.sampled_from([*vals, None]))
    for _, (attr, vals) in _LIST_FIELDS.items():
        kw[attr] = draw(st.lists(st.sampled_from(vals), max_size=3))
    for attr in _NUM_FIELDS.values():
        kw[attr] = draw(number)
    return ItemDoc(bpp_id="bpp", catalog_id="cat", item_id="i", **kw)


@settings(max_examples=500, deadline=None)
@given(st.lists(conjunct(), min_size=1, max_size=3), st.lists(item_doc(), min_size=1, max_size=12))
def test_covered_filters_are_their_pushdowns(conds: list[str], items: list[ItemDoc]) -> None:
    compiled = _compiled("$[?(" + " && ".join(conds) + ")]")
    if not covered(compiled.ast):
        return
    event("covered")
    q = Query(terms=compiled.pushdowns.terms, ranges=compiled.pushdowns.ranges)
    for it in items:
        assert compiled.predicate(it, META, NOW) == pushdowns_pass(q, it), it


# --- exhaustive over a small domain: every pair of tests, every item of a grid ------------------------

_TESTS = [f"{A}connectorType == 'CCS2'", f"{A}connectorType == 'ccs2'", f"{A}connectorType == 'Type2'",
          f"{A}connectorType in ['Type2', 'CCS2', 7]", f"{A}connectorType == 7",
          f"{A}vehicleType == '2-WHEELER'", f"{A}vehicleType == '4-WHEELER'", f"{A}vehicleType in ['4-WHEELER']",
          f"{A}maxPowerKW >= 7", f"{A}maxPowerKW > 7", f"{A}maxPowerKW <= 7.5", f"{A}maxPowerKW < 50",
          f"{A}maxPowerKW == 7", f"7 <= {A}maxPowerKW", f"{A}maxPowerKW >= '7'", f"{A}maxPowerKW != 7"]
_GRID = [ItemDoc(bpp_id="b", catalog_id="c", item_id="i", connector_type=c, vehicle_types=v, max_kw=k)
         for c in ("CCS2", "Type2", None)
         for v in ([], ["2-WHEELER"], ["4-WHEELER"], ["2-WHEELER", "4-WHEELER"])
         for k in (None, math.nan, 0, 7, 7.0, 7.2, 7.5, 50)]


def test_covered_pairs_are_their_pushdowns_on_a_grid() -> None:
    seen = 0
    for a in _TESTS:
        for b in _TESTS:
            compiled = _compiled(f"$[?({a} && {b})]")
            if not covered(compiled.ast):
                continue
            seen += 1
            q = Query(terms=compiled.pushdowns.terms, ranges=compiled.pushdowns.ranges)
            for it in _GRID:
                assert compiled.predicate(it, META, NOW) == pushdowns_pass(q, it), (a, b, it)
    assert seen >= 60
