"""Parsing of both dialects on every example request in tests/fixtures, dialect detection,
context checks, and ACK/NACK bodies."""

from __future__ import annotations

import time

import orjson
import pytest

from cds.core import errors as E
from cds.core.errors import BecknError
from cds.core.protocol import (MAX_ID_LEN, PUBLISH_ACTIONS, ack_body, detect_dialect, nack_body, parse_context,
                               parse_discover, parse_json, parse_publish, peek_ids)
from cds.core.timeutil import parse_instant
from tests.harness import FIXTURES, load_fixture

DISCOVERS = sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*.json")
                   if p.name.startswith(("UBC_discovery", "DEG_discovery", "discovery-", "discover_")))
PUBLISHES = ["UBC_catalog_publish_ev-charging-catalog-publish.json", "PSN_catalog_publish_publish_basic.json",
             "spec/examples/ubc/21_publish/ev-charging-catalog-publish.json",
             "spec/examples/lts-constructed/publish.json"]


def _at(doc) -> float:
    return parse_instant(doc["context"]["timestamp"], "UTC") + 1


def test_fixture_sets_are_not_empty():
    assert len(DISCOVERS) >= 15


@pytest.mark.parametrize("name", DISCOVERS)
def test_every_discover_example_parses(name):
    doc = load_fixture(name)
    ctx = parse_context(doc, expected_actions={"discover"}, now=_at(doc))
    req = parse_discover(doc, ctx)
    lts = "intent" in doc["message"]
    assert ctx.dialect == ("B" if lts else "A")
    body = doc["message"]["intent"] if lts else doc["message"]
    filters = body.get("filters")
    if isinstance(filters, dict):
        assert req.intent.expression == filters["expression"]
    elif isinstance(filters, str):
        assert req.intent.expression == filters
    assert len(req.intent.spatial) == len(body.get("spatial", []))
    for spec, raw in zip(req.intent.spatial, body.get("spatial", [])):
        assert spec.op == raw["op"].lower()
        assert spec.geometry == raw["geometry"]
    assert ctx.message_id == doc["context"].get("message_id", doc["context"].get("messageId"))
    assert ctx.bap_id == doc["context"].get("bap_id", doc["context"].get("bapId"))


def test_abhimail_collection_examples_parse():
    coll = load_fixture("ABHIMAIL_charging_service_v1_discover-requests_FIXED-stray-backslash-L149.json")
    for ex in coll["discover_requests"]:
        doc = ex["example"]
        req = parse_discover(doc, parse_context(doc, expected_actions={"discover"}, now=_at(doc)))
        assert req.context.dialect == "A"


@pytest.mark.parametrize("name", PUBLISHES)
def test_every_publish_example_parses(name):
    doc = load_fixture(name)
    ctx = parse_context(doc, expected_actions=PUBLISH_ACTIONS, now=_at(doc))
    req = parse_publish(doc, ctx)
    catalogs = (doc.get("message") or {}).get("catalogs") or doc.get("catalogs")
    assert req.catalogs == catalogs  # including the envelope with catalogs outside `message`
    assert req.update_mode == "FULL"


@pytest.mark.parametrize("name,action", [("UBC_on_discover_ev-charging-on_discover.json", "on_discover"),
                                         ("DEG_on_discover_ev-charging-discovery-catalog.json", "on_discover"),
                                         ("spec/examples/lts-constructed/on_discover.json", "on_discover")])
def test_on_discover_examples_parse(name, action):
    doc = load_fixture(name)
    ctx = parse_context(doc, expected_actions={action}, now=_at(doc))
    assert ctx.bpp_id


@pytest.mark.parametrize("name", ["DEG-v1EOS_search-request.json", "MISSIONS-DEG2.0_search.json",
                                  "UEI_search_location-and-connector.json", "ABHIMAIL_schema-pack_discover-request.json"])
def test_non_v2_requests_are_refused_cleanly(name):
    doc = load_fixture(name)
    with pytest.raises(BecknError) as e:
        parse_context(doc, expected_actions={"discover"}, now=1e10)
    assert e.value.status == 400 and e.value.code.startswith("CTX_")


def test_merge_directive_is_read():
    doc = load_fixture("spec/examples/lts-constructed/publish.json")
    doc["message"]["publishDirectives"] = {"updateMode": "merge"}
    req = parse_publish(doc, parse_context(doc, expected_actions=PUBLISH_ACTIONS, now=_at(doc)))
    assert req.update_mode == "MERGE"


def test_bare_string_filter():
    doc = load_fixture("UBC_discovery-by-QR.json")
    doc["message"]["filters"] = "$[?(@['beckn:id']=='x')]"
    req = parse_discover(doc, parse_context(doc, expected_actions={"discover"}, now=_at(doc)))
    assert req.intent.expression == "$[?(@['beckn:id']=='x')]"


@pytest.mark.parametrize("patch,code", [
    ({"transaction_id": None}, "CTX_MISSING_FIELD"),
    ({"message_id": 42}, "CTX_INVALID_FIELD"),
    ({"version": "1.1.0"}, "CTX_VERSION_UNSUPPORTED"),
    ({"ttl": "thirty seconds"}, "CTX_INVALID_FIELD"),
    ({"timestamp": "yesterday"}, "CTX_INVALID_FIELD"),
    ({"action": "search"}, "CTX_ACTION_MISMATCH"),
])
def test_context_errors(patch, code):
    doc = load_fixture("UBC_discovery-by-QR.json")
    for k, v in patch.items():
        if v is None:
            doc["context"].pop(k)
        else:
            doc["context"][k] = v
    with pytest.raises(BecknError) as e:
        parse_context(doc, expected_actions={"discover"}, now=_at(load_fixture("UBC_discovery-by-QR.json")))
    assert e.value.code == code and e.value.status == 400


@pytest.mark.parametrize("field, value, path", [
    ("bap_id", "   ", "context.bap_id"), ("bap_id", 7, "context.bap_id"), ("bapId", "", "context.bapId"),
    ("domain", "d" * 2049, "context.domain"), ("ttl", ["PT30S"], "context.ttl")])
def test_context_string_fields_are_judged_where_they_were_sent(field, value, path):
    doc = load_fixture("UBC_discovery-by-QR.json")
    doc["context"].pop("bap_id") if field == "bapId" else None
    doc["context"][field] = value
    with pytest.raises(BecknError) as e:
        parse_context(doc, expected_actions={"discover"}, now=_at(load_fixture("UBC_discovery-by-QR.json")))
    assert (e.value.code, e.value.paths) == ("CTX_INVALID_FIELD", path)


def test_ids_are_peeked_from_a_context_that_is_refused():
    """What the request log line shows when the context check fails: the ids as sent, in either dialect."""
    a = load_fixture("UBC_discovery-by-QR.json")["context"]
    assert peek_ids({"context": {**a, "version": "1.1.0"}}) == {
        "transaction_id": a["transaction_id"], "message_id": a["message_id"], "bap_id": a["bap_id"], "bpp_id": None}
    b = load_fixture("spec/examples/lts-constructed/publish.json")["context"]
    assert peek_ids({"context": {**b, "timestamp": "yesterday"}}) == {
        "transaction_id": b["transactionId"], "message_id": b["messageId"], "bap_id": None, "bpp_id": b["bppId"]}
    assert peek_ids({"context": {"transaction_id": 42, "message_id": "m" * 10_000}}) == {
        "transaction_id": None, "message_id": "m" * MAX_ID_LEN, "bap_id": None, "bpp_id": None}
    assert peek_ids([1]) == peek_ids({"context": "x"}) == dict.fromkeys(("transaction_id", "message_id", "bap_id",
                                                                          "bpp_id"))


def test_ttl_expiry_uses_timestamp_plus_ttl():
    doc = load_fixture("UBC_discovery-by-QR.json")  # PT30S
    t = parse_instant(doc["context"]["timestamp"], "UTC")
    parse_context(doc, expected_actions={"discover"}, now=t + 29)
    with pytest.raises(BecknError) as e:
        parse_context(doc, expected_actions={"discover"}, now=t + 60)
    assert e.value.code == "CTX_TTL_EXPIRED"


def test_dialect_detection():
    assert detect_dialect(load_fixture("UBC_discovery-by-QR.json")) == "A"
    assert detect_dialect(load_fixture("spec/examples/lts-constructed/discover_qr.json")) == "B"
    assert detect_dialect([1, 2]) == "A"


def test_ack_nack_shapes():
    import orjson

    assert orjson.loads(ack_body("A")) == {"message": {"ack": {"status": "ACK"}}}
    assert orjson.loads(ack_body("B")) == {"status": "ACK"}
    err = BecknError("CTX_MISSING_FIELD", "no context", 400, "context")
    a = orjson.loads(nack_body(err, "A"))
    assert a == {"message": {"ack": {"status": "NACK"}}, "error": {"code": "CTX_MISSING_FIELD", "message": "no context", "paths": "context"}}
    b = orjson.loads(nack_body(err, "B"))
    assert b["status"] == "NACK" and b["error"]["errorCode"] == "CTX_MISSING_FIELD"


# --- big publish bodies are read as a skeleton before the ACK (docs/decisions.md §24) ------------------------

def _big_publish(pad_items: int = 2000) -> dict:
    doc = load_fixture("UBC_catalog_publish_ev-charging-catalog-publish.json")
    cat = doc["message"]["catalogs"][0]
    cat["beckn:items"] = cat["beckn:items"] * (pad_items // max(1, len(cat["beckn:items"])) + 1)
    doc["message"]["publishDirectives"] = {"updateMode": "MERGE"}
    doc["unrelated"] = {"x": 1}
    return doc


def test_a_big_publish_skeleton_answers_the_ack_checks_like_the_full_parse():
    from cds.core.protocol import SKELETON_MIN_BYTES, parse_publish_json

    doc = _big_publish()
    body = orjson.dumps(doc)
    assert len(body) >= SKELETON_MIN_BYTES
    full, skel = parse_json(body), parse_publish_json(body)
    assert skel["context"] == full["context"]
    now = time.time()
    reqs = []
    for d in (full, skel):
        d["context"]["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        ctx = parse_context(d, expected_actions=PUBLISH_ACTIONS, now=now, clock_skew_s=5)
        reqs.append(parse_publish(d, ctx))
    a, b = reqs
    assert a.update_mode == b.update_mode == "MERGE"
    for ca, cb in zip(a.catalogs, b.catalogs, strict=True):
        for key in ("beckn:id", "beckn:bppId", "beckn:descriptor"):
            assert ca.get(key) == cb.get(key)
        assert len(orjson.dumps(ca["beckn:items"])) > 64 << 10 and "beckn:items" in cb   # left undecoded


@pytest.mark.parametrize("mutate", [lambda d: d.__setitem__("message", ["not", "an", "object"]),
                                    lambda d: d["message"].__setitem__("catalogs", "nope"),
                                    lambda d: d["message"]["catalogs"].append(7)])
def test_a_big_publish_of_another_shape_is_parsed_in_full(mutate):
    from cds.core.protocol import parse_publish_json

    doc = _big_publish()
    mutate(doc)
    body = orjson.dumps(doc)
    assert parse_publish_json(body) == parse_json(body)


def test_a_big_body_that_is_not_json_is_the_same_nack():
    from cds.core.protocol import SKELETON_MIN_BYTES, parse_publish_json

    body = b'{"context": {' + b" " * SKELETON_MIN_BYTES
    with pytest.raises(BecknError) as e:
        parse_publish_json(body)
    assert e.value.code == E.SCH_INVALID_JSON
