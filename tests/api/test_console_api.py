"""The console's HTTP side without a browser (real HTTP, embedded index): the token in its three forms,
the page's headers, the JSON endpoints after a real publish, and the tester's refusals (README "Operator
console")."""

from __future__ import annotations

import copy

import orjson
import pytest

from cds.api.app import create_app
from cds.config import ConfigError, load_settings
from tests.api.test_api_protocol import publish_body
from tests.harness import fresh_context, start_client

TOKEN = "console-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def console(network):
    client = await start_client(create_app(network.settings(console_token=TOKEN)))
    yield client
    await client.close()


async def _published(console, network, body: bytes) -> None:
    n = len(network.bpp_sink.received)
    assert (await console.post("/beckn/catalog/publish", data=body, headers=network.bpp.sign(body))).status == 200
    await network.bpp_sink.wait_for(n + 1)          # on_catalog_publish: indexed (or rejected)


async def test_no_token_setting_no_console(cds):
    for path in ("/console", "/console/api/overview"):
        assert (await cds.get(path, headers=AUTH)).status == 404


async def test_token_as_bearer_or_as_the_cookie_of_a_first_visit(console):
    r = await console.get("/console")
    assert r.status == 401 and "operator token" in await r.text() and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await console.get("/console/api/overview", headers={"Authorization": "Bearer " + "x" * 28})).status == 401
    assert (await console.get("/console", params={"token": "wrong"})).status == 401

    r = await console.get("/console", params={"token": TOKEN}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/console"
    cookie = r.cookies["cds_console"]
    assert TOKEN not in cookie.value and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert cookie["path"] == "/console"

    r = await console.get("/console")                  # the client sends the cookie back
    assert r.status == 200 and "<title>CDS operator console" in await r.text()
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "img-src 'self' data:;" in csp
    js = await console.get("/console/static/console.js")
    assert js.status == 200 and js.content_type == "text/javascript"
    assert (await console.get("/console/static/../routes.py")).status == 404
    assert (await console.get("/console/api/overview")).status == 200


async def test_tile_url_is_the_one_other_origin_the_page_may_load(network):
    settings = network.settings(console_token=TOKEN, console_tile_url="https://{s}.tiles.example.org/{z}/{x}/{y}.png")
    client = await start_client(create_app(settings))
    try:
        r = await client.get("/console", headers=AUTH)
        assert "img-src 'self' data: https://*.tiles.example.org;" in r.headers["Content-Security-Policy"]
        cfg = await (await client.get("/console/api/config", headers=AUTH)).json()
        assert cfg["tile_url"] == "https://{s}.tiles.example.org/{z}/{x}/{y}.png"
    finally:
        await client.close()


async def test_endpoints_after_a_publish_and_a_rejected_catalog(console, network):
    await _published(console, network, publish_body(network))
    bad = orjson.loads(publish_body(network))
    broken = copy.deepcopy(bad["message"]["catalogs"][0])
    broken.pop("beckn:id")
    bad["message"]["catalogs"] = [broken]
    await _published(console, network, orjson.dumps(fresh_context(bad)))

    overview = await (await console.get("/console/api/overview", headers=AUTH)).json()
    assert overview["index"]["catalogs"] == 1 and overview["index"]["items"] == 3
    ingest = overview["ingest"]
    assert (ingest["catalogs_accepted"], ingest["catalogs_rejected"]) == (1, 1)   # the backlog may still hold
    assert ingest["backlog"] in (0, 1)                                                  # the last until acked
    assert ingest["publish_to_searchable"]["count"] == 1 and ingest["publish_to_searchable"]["p95_s"] > 0

    rows = {r["bpp_id"]: r for r in (await (await console.get("/console/api/bpps", headers=AUTH)).json())["bpps"]}
    row = rows[network.bpp.subscriber_id]
    assert (row["role"], row["catalogs"], row["items"], row["rejected_catalogs"]) == ("publisher", 1, 3, 1)
    assert row["last_publish_age_s"] >= 0 and row["circuit"] is None

    cov = await (await console.get("/console/api/coverage", headers=AUTH)).json()
    assert cov["total"] == 3 and len(cov["points"]) == 3 and not cov["cells"]
    clustered = await (await console.get("/console/api/coverage", params={"max_points": "0", "precision": "3"},
                                         headers=AUTH)).json()
    assert [c["count"] for c in clustered["cells"]] == [3]
    elsewhere = await (await console.get("/console/api/coverage", params={"bbox": "0,0,10,10"}, headers=AUTH)).json()
    assert elsewhere["total"] == 0
    r = await console.get("/console/api/coverage", params={"bbox": "1,2,3"}, headers=AUTH)
    assert r.status == 400 and "bbox" in (await r.json())["error"]["message"]


@pytest.mark.parametrize("form", [
    {"point": [77.59, 12.94], "radius_m": 10000, "connector_type": "CCS2", "min_kw": 50, "text": "charging"},
    {"route": [[77.50, 12.90], [77.62, 12.93], [77.70, 13.00]], "radius_m": 4000,
     "start": "2026-01-04T10:00", "end": "2026-01-04T11:30"},   # the fixture's day; network time (IST)
])
async def test_tester_answers_like_a_signed_discover(console, network, form):
    await _published(console, network, publish_body(network))
    r = await console.post("/console/api/discover", data=orjson.dumps(form), headers=AUTH)
    assert r.status == 200
    got = await r.json()
    ids = [i["item_id"] for i in got["items"]]
    assert ids and got["took_ms"] >= 0
    assert [i["beckn:id"] for c in got["on_discover"]["message"]["catalogs"] for i in c["beckn:items"]] == ids

    body = orjson.dumps(fresh_context(got["request"], bap_id=network.bap.subscriber_id,
                                      bap_uri=network.bap.url))
    signed = await console.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
    assert signed.status == 200
    answer = await signed.json()
    assert [i["beckn:id"] for c in answer["message"]["catalogs"] for i in c["beckn:items"]] == ids


@pytest.mark.parametrize("form, field", [
    ({"connector_type": "CCS2' || @.x == 'y"}, "connector_type"),
    ({"point": [200, 10]}, "lon"),
    ({"point": [77.5, 12.9], "radius_m": 0}, "radius_m"),
    ({"route": [[77.5, 12.9]]}, "route"),
    ({"start": "2026-12-04T10:00:00Z"}, "start"),
    ({"start": "tomorrow", "end": "2026-12-04T10:00:00Z"}, "start"),
    ({"min_kw": "lots"}, "min_kw"),
])
async def test_tester_refuses_bad_fields_naming_them(console, form, field):
    r = await console.post("/console/api/discover", data=orjson.dumps(form), headers=AUTH)
    assert r.status == 400
    assert (await r.json())["error"]["paths"] == field


async def test_tester_needs_json(console):
    r = await console.post("/console/api/discover", data=b"{not json", headers=AUTH)
    assert r.status == 400


@pytest.mark.parametrize("env", [{"CDS_CONSOLE_TOKEN": "short"}, {"CDS_CONSOLE_TOKEN": "has spaces in the token"},
                                 {"CDS_CONSOLE_TILE_URL": "https://tiles.example.org/tile.png"},
                                 {"CDS_CONSOLE_TILE_URL": "ftp://x/{z}/{x}/{y}"}])
def test_console_settings_are_validated(env):
    with pytest.raises(ConfigError) as e:
        load_settings(env)
    assert next(iter(env)) in str(e.value)
    assert "has spaces" not in str(e.value)          # the token is never echoed
