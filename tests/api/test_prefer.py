"""RFC 7240 `Prefer` parsing: which headers ask for the synchronous discover answer."""

from __future__ import annotations

import pytest

from cds.api.prefer import MAX_PREFER_CHARS, preferences, wants_representation


@pytest.mark.parametrize("values", [
    ["return=representation"],
    ["RETURN = Representation"],
    ["respond-async, return=representation; x=1"],
    ['return="representation"'],
    ["wait=10", "return=representation"],                       # several Prefer headers
    ['wait=10; foo="a,b", return=representation'],              # a comma inside a quoted parameter
    ["garbage @@@, return=representation"],                     # a malformed preference is skipped
])
def test_asks_for_the_representation(values):
    assert wants_representation(values)


@pytest.mark.parametrize("values", [
    [], [""], ["return=minimal"], ["return"], ["respond-async"],
    ["return=minimal, return=representation"],                  # RFC 7240 §2: the first instance counts
    ["return=minimal", "return=representation"],
    ['foo="return=representation"'],
    ["x" * MAX_PREFER_CHARS + ", return=representation"],       # beyond the bound: not read
])
def test_does_not_ask_for_the_representation(values):
    assert not wants_representation(values)


def test_values_are_unquoted_and_names_lower_cased():
    assert preferences(['Wait=5, Handling="strict", x="a\\"b"']) == {"wait": "5", "handling": "strict", "x": 'a"b'}
