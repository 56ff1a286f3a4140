"""Structured logs: one JSON object per request line with the documented fields, and no key
material or signatures anywhere in the output."""

from __future__ import annotations

import io
import logging

import orjson

from tests.harness import fresh_context, load_fixture

FIELDS = {"ts", "level", "logger", "msg", "action", "outcome", "transaction_id", "message_id", "subscriber",
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
        await network.bap_sink.wait_for(1)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    out = buf.getvalue()
    lines = [orjson.loads(line) for line in out.splitlines() if line.strip()]
    requests = [r for r in lines if r.get("msg") == "request"]
    assert len(requests) == 2
    ok, refused = requests
    assert FIELDS <= set(ok), set(ok) ^ FIELDS
    assert ok["action"] == "discover" and ok["outcome"] == "ack" and ok["subscriber"] == network.bap.subscriber_id
    assert ok["message_id"] == doc["context"]["message_id"] and ok["transaction_id"] == doc["context"]["transaction_id"]
    assert refused["outcome"] == "nack" and refused["code"] == "AUT_SIGNATURE_INVALID"
    signature = headers["Authorization"].split('signature="')[1].rstrip('"')
    for secret in (network.cds_seed, signature, "Signature keyId", network.bap.public_key):
        assert secret not in out
