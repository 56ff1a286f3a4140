"""`cds request --sync-post`: the synchronous answer over POST (`Prefer: return=representation`), run as
the real command against a real CDS on loopback."""

from __future__ import annotations

import asyncio
import base64
import sys
from pathlib import Path

import aiohttp
import orjson
from aiohttp.test_utils import TestServer

from tests.harness import fresh_context, load_fixture

FIXTURES = Path(__file__).parent.parent / "fixtures"
PUBLISH = "UBC_catalog_publish_ev-charging-catalog-publish.json"
BTM_CCS2 = "IND*ecopower-charging*cs-01*IN*ECO*BTM*01*CCS2*A*CCS2-A"


async def test_sync_post_prints_the_answer_without_waiting_for_a_callback(network):
    from cds.api.app import create_app

    server = TestServer(create_app(network.settings()), host="127.0.0.1")
    await server.start_server()
    try:
        doc = fresh_context(load_fixture(PUBLISH), bpp_id=network.bpp.subscriber_id, bpp_uri=network.bpp.url)
        for cat in doc["message"]["catalogs"]:
            cat["beckn:bppId"], cat["beckn:bppUri"] = network.bpp.subscriber_id, network.bpp.url
        body = orjson.dumps(doc)
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{server.port}/beckn/catalog/publish", data=body,
                              headers=network.bpp.sign(body)) as resp:
                assert resp.status == 200
        await network.bpp_sink.wait_for(1)
        bap = network.bap
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cds", "request",
            str(FIXTURES / "UBC_discovery-within-boundary-with-connection-spec.json"),
            "--url", f"http://127.0.0.1:{server.port}/beckn", "--sync-post",
            "--key", base64.b64encode(bytes(bap.key)).decode(), "--subscriber-id", bap.subscriber_id,
            "--key-id", bap.key_id, "--wait", "60",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        out_s = out.decode()
        assert proc.returncode == 0, out_s + err.decode()
        assert "POST " in out_s and "HTTP 200" in out_s
        assert '"on_discover"' in out_s and BTM_CCS2 in out_s
        assert "callback POST" not in out_s              # the answer came in the reply, no callback awaited
    finally:
        await server.close()

