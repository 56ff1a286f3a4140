"""cds.core.filter_pushdowns: terms and ranges come from top-level conjunctions only and are always a superset of
the predicate's matches (checked against a plain-Python oracle over random documents and expressions)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds.core.documents import ItemDoc
from cds.core.filter_pushdowns import Pushdowns
from cds.core.filters import compile_filter
from tests.core.test_filters import FLEET, IST, META, NOW, make_item, run


def test_pushdowns_only_from_top_level_conjunctions() -> None:
    def pd(expr: str) -> Pushdowns:
        return compile_filter(expr, tz=IST, status_fresh_s=900).pushdowns
    p = pd("$[?(@.beckn:itemAttributes.connectorType == 'ccs2' && @.beckn:itemAttributes.maxPowerKW >= 50 "
           "&& @.beckn:itemAttributes.maxPowerKW < 150 && @.beckn:id in ['a', 'b'])]")
    assert p.terms == {"connector_type": frozenset({"CCS2"}), "item_id": frozenset({"a", "b"})}
    assert p.ranges == {"max_kw": (50, 150)}
    assert pd("$[?(@.beckn:itemAttributes.connectorType == 'CCS2' || @.beckn:id == 'x')]") == Pushdowns()
    assert pd("$[?(!(@.beckn:id == 'x'))]") == Pushdowns()
    assert pd("$[?(@.beckn:itemAttributes.stationStatus == 'Available')]") == Pushdowns()
    assert pd("$.catalogs[*].offers[?(@.beckn:id == 'o1')]") == Pushdowns()


def test_list_field_conjunction_keeps_a_superset() -> None:
    """`vehicleType == A && vehicleType == B` on a list field: one list can contain both, so the pushdown is
    one of the sets (never their empty intersection) and the item with both matches."""
    expr = ("$[?(@.beckn:itemAttributes.vehicleType == '2-WHEELER' "
            "&& @.beckn:itemAttributes.vehicleType == '4-WHEELER')]")
    p = compile_filter(expr, tz=IST, status_fresh_s=900).pushdowns
    assert p.terms["vehicle_types"] in (frozenset({"2-WHEELER"}), frozenset({"4-WHEELER"}))
    assert run(expr, FLEET) == {"ccs2-120"}
    assert passes_pushdowns(p, FLEET[1])
    # a scalar field still intersects: no connector is both
    scalar = ("$[?(@.beckn:itemAttributes.connectorType == 'CCS2' "
              "&& @.beckn:itemAttributes.connectorType == 'Type2')]")
    assert compile_filter(scalar, tz=IST, status_fresh_s=900).pushdowns.terms == {"connector_type": frozenset()}


CONNECTORS = ["CCS2", "Type2", "CHAdeMO", "GB_T"]
VEHICLES = ["2-WHEELER", "3-WHEELER", "4-WHEELER"]
KWS = [3.3, 7.4, 22, 30, 50, 60, 120, 150]
IDS = ["a", "b", "c", "d"]
PROVIDERS = ["p1", "p2"]

docs_st = st.lists(st.builds(
    lambda i, c, kw, vs, p: make_item(i, connector=c, kw=kw, vehicle=vs, provider=p),
    st.sampled_from(IDS), st.sampled_from(CONNECTORS), st.sampled_from(KWS),
    st.lists(st.sampled_from(VEHICLES), min_size=1, max_size=3, unique=True), st.sampled_from(PROVIDERS)),
    min_size=1, max_size=6)


def atom_st() -> st.SearchStrategy:
    """(expression text, python oracle over ItemDoc)."""
    ops = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
           "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
    conn = st.tuples(st.sampled_from(["==", "!="]), st.sampled_from(CONNECTORS)).map(
        lambda t: (f"@.beckn:itemAttributes.connectorType {t[0]} '{t[1]}'",
                   lambda d, t=t: ops[t[0]](d.connector_type, t[1])))
    power = st.tuples(st.sampled_from(list(ops)), st.sampled_from(KWS + [0, 55, 500])).map(
        lambda t: (f"@.beckn:itemAttributes.maxPowerKW {t[0]} {t[1]}", lambda d, t=t: ops[t[0]](d.max_kw, t[1])))
    power_rev = st.tuples(st.sampled_from([">=", "<"]), st.sampled_from(KWS)).map(
        lambda t: (f"{t[1]} {t[0]} @.beckn:itemAttributes.maxPowerKW", lambda d, t=t: ops[t[0]](t[1], d.max_kw)))
    veh = st.sampled_from(VEHICLES).map(
        lambda v: (f"@.beckn:itemAttributes.vehicleType == '{v}'", lambda d, v=v: v in d.vehicle_types))
    ident = st.lists(st.sampled_from(IDS), min_size=1, max_size=3).map(
        lambda ids: ("@['beckn:id'] in [" + ", ".join(f"'{i}'" for i in ids) + "]", lambda d, ids=ids: d.item_id in ids))
    prov = st.sampled_from(PROVIDERS).map(
        lambda p: (f"@.beckn:provider.beckn:id == '{p}'", lambda d, p=p: d.provider_id == p))
    raw = st.sampled_from(KWS).map(  # the same number through the JSON path (not a typed field)
        lambda k: (f"@['beckn:itemAttributes']['maxPowerKW'] > {k}", lambda d, k=k: d.max_kw > k))
    return st.one_of(conn, power, power_rev, veh, ident, prov, raw)


def expr_st() -> st.SearchStrategy:
    def combine(children: st.SearchStrategy) -> st.SearchStrategy:
        pair = st.tuples(children, children)
        return st.one_of(
            pair.map(lambda p: (f"({p[0][0]} && {p[1][0]})", lambda d, p=p: p[0][1](d) and p[1][1](d))),
            pair.map(lambda p: (f"({p[0][0]} || {p[1][0]})", lambda d, p=p: p[0][1](d) or p[1][1](d))),
            children.map(lambda c: (f"!({c[0]})", lambda d, c=c: not c[1](d))),
        )
    tree = st.recursive(atom_st(), combine, max_leaves=5)
    # top level: a conjunction, so that pushdowns have something to work with
    return st.lists(tree, min_size=1, max_size=4).map(
        lambda xs: (" && ".join(x[0] for x in xs), lambda d, xs=xs: all(x[1](d) for x in xs)))


def passes_pushdowns(p: Pushdowns, d: ItemDoc) -> bool:
    for attr, allowed in p.terms.items():
        v = getattr(d, attr)
        if not (set(v) & allowed if isinstance(v, list) else v in allowed):
            return False
    for attr, (lo, hi) in p.ranges.items():
        v = getattr(d, attr)
        if v is None or (lo is not None and v < lo) or (hi is not None and v > hi):
            return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs_st, expr_st())
def test_predicate_matches_oracle_and_pushdowns_are_supersets(docs: list[ItemDoc], ex) -> None:
    text, oracle = ex
    f = compile_filter(f"$[?({text})]", tz=IST, status_fresh_s=900)
    for d in docs:
        got = f.predicate(d, META, NOW)
        assert got == oracle(d), text
        if got:
            assert passes_pushdowns(f.pushdowns, d), text
