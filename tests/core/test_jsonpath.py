"""cds.core.jsonpath: invalid, oversized and random expressions are refused with SCH_INVALID_JSONPATH (a 400),
never another error; the grammar's bounds hold (docs/decisions.md §24)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.core.errors import SCH_INVALID_JSONPATH, BecknError
from cds.core.filters import compile_filter
from tests.core.test_filters import FLEET, IST, META, NOW


@pytest.mark.parametrize("expr", [
    "", "   ", "$[?(@.a == 1]", "$[?(@.a == 1)", "$[?(@.a = 1)]", "$[?(@.a === 1)]", "$[?(@.a <> 1)]",
    "$[?(@.a =~ 'x')]", "$[?(@.a == 'x)]", "$[?()]", "$[?(@.a == 1)] trailing", "@.a == 1", "$..geo",
    "$[?(@.a == $.b)]", "$[?(match(@.a, 'x'))]", "$[?(@.a like_regex 'x')]", "$[?(@.a starts with 'x')]",
    "$.foo", "$[?(@.a == 1)].beckn:id", "$[?(@.a &&)]", "$[?(@.a ||| @.b)]", "$[?('x')]", "$[?(1 == )]",
    "$[?(@.a in 'x')]", "$[?(length(@.a))]", "$[?(@.a == [1])]", "$['a'", "$[?(@[0:1:0])]",
    "$.catalogs[*].providers[?(@.id == 1)]", "$[?(@.a == 1e999)]", "$[?(@.a == 'bad \\q escape')]",
    '$[?(@.a == "x")] ? ', "$[?(unknownfn(@.a))]", "$[?(@.a == nul)]",
])
def test_invalid_expressions(expr: str) -> None:
    with pytest.raises(BecknError) as e:
        compile_filter(expr, tz=IST, status_fresh_s=900)
    assert e.value.code == SCH_INVALID_JSONPATH and e.value.status == 400
    assert e.value.message


def test_bounds() -> None:
    with pytest.raises(BecknError, match="too long"):
        compile_filter("$[?(@.a == '" + "x" * 5000 + "')]", tz=IST, status_fresh_s=1)
    with pytest.raises(BecknError, match="nested too deeply"):
        compile_filter("$[?(" + "(" * 20 + "@.a == 1" + ")" * 20 + ")]", tz=IST, status_fresh_s=1)
    with pytest.raises(BecknError, match="nested too deeply"):
        compile_filter("$[?(" + "!" * 40 + "@.a)]", tz=IST, status_fresh_s=1)
    with pytest.raises(BecknError, match="too complex"):
        compile_filter("$[?(" + " || ".join(f"@.a == {i}" for i in range(120)) + ")]", tz=IST, status_fresh_s=1)
    with pytest.raises(BecknError, match="position"):
        compile_filter("$[?(@.a == 1 && )]", tz=IST, status_fresh_s=1)
    # just inside the bounds is fine
    compile_filter("$[?(" + "(" * 10 + "@.a == 1" + ")" * 10 + ")]", tz=IST, status_fresh_s=1)


ALPHABET = list("$@.[]()?*,:'\"=!<>&|-0123456789 ") + ["beckn:", "@.a", "==", "&&", "||", "in", "true", "null",
                                                       "exists(", "[?(", ")]", "'CCS2'", "availabilityWindow",
                                                       "startTime", "offers", "catalogs", "items"]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(st.sampled_from(ALPHABET), max_size=40).map("".join),
                 st.lists(st.sampled_from(ALPHABET), max_size=30).map(lambda xs: "$[?(" + "".join(xs) + ")]")))
def test_garbage_only_ever_raises_becknerror(text: str) -> None:
    try:
        f = compile_filter(text, tz=IST, status_fresh_s=900)
    except BecknError as e:
        assert e.code == SCH_INVALID_JSONPATH
        return
    for d in FLEET[:2]:
        assert f.predicate(d, META, NOW) in (True, False)
