"""The summary `cds request` prints: the reply line (ACK, NACK with its code, a synchronous on_discover) and
what an answer holds, in both dialects, from the spec examples."""

from __future__ import annotations

from cds.cli.summary import reply_line, result_lines
from tests.harness import load_fixture


def test_reply_line_names_ack_nack_code_and_sync_answers():
    assert reply_line(200, {"message": {"ack": {"status": "ACK"}}}, 2.04) == "HTTP 200 ACK in 2.0 ms"
    assert reply_line(200, {"status": "ACK"}, 1) == "HTTP 200 ACK in 1.0 ms"           # LTS
    nack = {"message": {"ack": {"status": "NACK"}}, "error": {"code": "SCH_INVALID_JSONPATH", "message": "bad"}}
    assert reply_line(400, nack, 1) == "HTTP 400 NACK in 1.0 ms: SCH_INVALID_JSONPATH: bad"
    lts_nack = {"status": "NACK", "error": {"errorCode": "AUT_SIGNATURE_INVALID", "errorMessage": "no"}}
    assert reply_line(401, lts_nack, 1) == "HTTP 401 NACK in 1.0 ms: AUT_SIGNATURE_INVALID: no"
    assert reply_line(200, load_fixture("UBC_on_discover_ev-charging-on_discover.json"), 9) == \
        "HTTP 200 on_discover in 9.0 ms"
    assert reply_line(405, None, 1) == "HTTP 405 (not JSON) in 1.0 ms"


def test_on_discover_counts_catalogs_and_items_per_bpp():
    doc = load_fixture("UBC_on_discover_ev-charging-on_discover.json")
    assert result_lines(doc) == ["results:  3 items in 1 catalog from 1 BPP",
                                 "  bpp.ev-network.example.com: 1 catalog, 3 items"]
    cat = doc["message"]["catalogs"][0]
    lts = {"id": "c2", "bppId": "lts.bpp", "resources": [{"id": "r1"}]}
    doc["message"]["catalogs"] = [cat, dict(cat, **{"beckn:id": "c9"}), lts]
    assert result_lines(doc) == ["results:  7 items in 3 catalogs from 2 BPPs",
                                 "  bpp.ev-network.example.com: 2 catalogs, 6 items",
                                 "  lts.bpp: 1 catalog, 1 item"]
    doc["message"]["catalogs"] = []
    assert result_lines(doc) == ["results:  no matching items (0 catalogs)"]


def test_on_catalog_publish_lists_each_catalog_with_its_outcome():
    assert result_lines(load_fixture("UBC_on_catalog_publish_ev-charging-catalog-on_publish.json")) == [
        "results:  2 catalogs",
        "  catalog-ev-charging-001: ACCEPTED, 42 items, 1 warning",
        "  catalog-ev-charging-002: REJECTED (INVALID_ITEM: Invalid item payload at index 3)"]
    lts = {"message": {"results": [{"catalogId": "c1", "status": "ACCEPTED", "stats": {"itemCount": 1}},
                                   {"catalogId": "c2", "status": "REJECTED",
                                    "errors": [{"errorCode": "SCH_X", "errorMessage": "why"}]}]}}
    assert result_lines(lts) == ["results:  2 catalogs", "  c1: ACCEPTED, 1 item", "  c2: REJECTED (SCH_X: why)"]
    assert result_lines({"message": {"ack": {"status": "ACK"}}}) == []
