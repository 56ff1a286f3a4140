"""Structured logs: one JSON object per request line with the documented fields (the ids as sent even when the
context is refused; the verified signer beside the claimed caller), and no key material or signatures anywhere
in the output."""

from __future__ import annotations

import io
import logging

import orjson

from tests.harness import fresh_context, load_fixture

FIELDS = {"ts", "level", "logger", "msg", "action", "outcome", "transaction_id", "message_id", "signer", "claimed",
          "latency_ms", "code", "method"}


async def test_request_lines_are_json_without_secrets(cds, network):
    from cds.logs import setup_logging

    buf = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    setup_logging("INFO", stream=buf)
    try:
        doc = fresh_context(load_fixture("UBC_discovery-by-QR.json"), bap_id=network.bap.subscriber_id,
                            bap_uri=network.bap.url)
        body = orjson.dumps(doc)
        headers = network.bap.sign(body)
        assert (await cds.post("/beckn/discover", data=body, headers=headers)).status == 200
        bad = dict(headers, Authorization=headers["Authorization"].replace('signature="', 'signature="AAAA'))
        assert (await cds.post("/beckn/discover", data=body, headers=bad)).status == 401
        # refused at the context check, before any signature: the ids it was sent are still logged
        old = fresh_context(doc, version="1.1.0")
        old_body = orjson.dumps(old)
        assert (await cds.post("/beckn/discover", data=old_body, headers=network.bap.sign(old_body))).status == 400
        # signed by the BPP while claiming to be the BAP: both names are logged
        assert (await cds.post("/beckn/discover", data=body, headers=network.bpp.sign(body))).status == 401
        await network.bap_sink.wait_for(1)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    out = buf.getvalue()
    lines = [orjson.loads(line) for line in out.splitlines() if line.strip()]
    requests = [r for r in lines if r.get("msg") == "request"]
    assert len(requests) == 4
    ok, refused, early, impostor = requests
    assert all(set(r) == FIELDS for r in requests), [set(r) ^ FIELDS for r in requests]
    bap, bpp = network.bap.subscriber_id, network.bpp.subscriber_id
    assert ok["action"] == "discover" and ok["outcome"] == "ack" and (ok["signer"], ok["claimed"]) == (bap, bap)
    assert ok["message_id"] == doc["context"]["message_id"] and ok["transaction_id"] == doc["context"]["transaction_id"]
    assert refused["outcome"] == "nack" and refused["code"] == "AUT_SIGNATURE_INVALID"
    assert (refused["signer"], refused["claimed"]) == (None, bap)          # nobody verified
    assert early["code"] == "CTX_VERSION_UNSUPPORTED" and early["signer"] is None
    assert (early["transaction_id"], early["message_id"]) == (old["context"]["transaction_id"],
                                                             old["context"]["message_id"])
    assert impostor["code"] == "AUT_UNAUTHORIZED_ACTION" and (impostor["signer"], impostor["claimed"]) == (bpp, bap)
    signature = headers["Authorization"].split('signature="')[1].rstrip('"')
    for secret in (network.cds_seed, signature, "Signature keyId", network.bap.public_key):
        assert secret not in out
