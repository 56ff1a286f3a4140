"""The metrics documented in README "Metrics" are what /metrics serves: a scripted publish, a refused and an
accepted discover fanned out to mock BPPs (one answers, one fails and opens its circuit), then a scrape over
real HTTP finds every documented metric with its documented type and labels, and non-zero values (checked
against what the script did, not against the implementation) where the script must have moved it. The stream
mode is scraped from a real `cds indexer` process (its /metrics and /health/* serve the chart's probes).
Also: README's configuration table covers every CDS_* setting.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from cds.api.app import create_app
from cds.config import env_names
from cds.metrics import new_metrics
from cds.api.appkeys import INGEST
from indexer.ingest.stream import IngestStream
from tests.fanout_mocks import discover_doc, publish_cached, reply_items, start_bpps, start_cds
from tests.harness import load_fixture, start_client
from tests.redis_server import free_port
from tests.stream_support import (FAST, indexer_env, publish_body, spawn_indexer, stop_indexer, wait_until)

README = Path(__file__).resolve().parents[2] / "README.md"
PUBLISH_FIXTURE = "UBC_catalog_publish_ev-charging-catalog-publish.json"


# ---- README -------------------------------------------------------------------------------------------

def readme_section(title: str) -> str:
    text = README.read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.M | re.S)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def table_rows(section: str) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("|")]
    return rows[2:]  # after the header and the separator


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """README "Metrics" table: name -> (type, label names)."""
    out = {}
    for name, typ, labels, meaning in table_rows(readme_section("Metrics")):
        (n,) = re.fullmatch(r"`(\w+)`", name).groups()
        assert meaning, n
        out[n] = (typ, set(re.findall(r"`(\w+)`", labels)))
    return out


def code_metrics() -> dict[str, tuple[str, set[str]]]:
    """What cds/metrics.py defines: exposed family name -> (type, label names)."""
    m = new_metrics()
    out = {}
    for attr in vars(m).values():
        if attr is m.registry or not hasattr(attr, "describe"):
            continue
        (fam,) = attr.describe()
        name = fam.name + ("_total" if fam.type == "counter" else "")
        out[name] = (fam.type, set(attr._labelnames))  # the label names the collector was declared with
    return out


def test_readme_metrics_table_is_exactly_the_metrics_in_the_code():
    doc, code = documented_metrics(), code_metrics()
    assert len(code) >= 30 and all(n.startswith("cds_") for n in code)
    assert set(doc) == set(code), (sorted(set(code) - set(doc)), sorted(set(doc) - set(code)))
    wrong = {n: (doc[n], code[n]) for n in code if doc[n] != code[n]}
    assert not wrong, wrong


def test_readme_configuration_table_covers_every_setting():
    names_in_rows = set()
    for row in table_rows(readme_section("Configuration")):
        names_in_rows |= set(re.findall(r"`(CDS_[A-Z0-9_]+)`", row[0] + " " + row[2]))
    missing = [n for n in env_names() if n not in names_in_rows]
    assert not missing, f"CDS_* settings without a row in README's configuration table: {missing}"
    unknown = names_in_rows - set(env_names())
    assert not unknown, f"README's configuration table documents unknown settings: {unknown}"


def test_readme_logs_sentence_names_the_request_log_fields():
    section = readme_section("Metrics")
    for field in ("transaction_id", "message_id", "signer", "claimed", "action", "outcome", "latency_ms", "code"):
        assert f"`{field}`" in section, field


# ---- scraping -----------------------------------------------------------------------------------------

class Scrape:
    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.text = text

    def family(self, exposed: str):
        """The parsed family of an exposed name (the parser drops a counter's _total)."""
        return self.families.get(exposed.removesuffix("_total")) or self.families.get(exposed)

    def value(self, sample: str, **labels: str) -> float:
        """The value of the sample with exactly these labels, 0 when absent."""
        for fam in self.families.values():
            for s in fam.samples:
                if s.name == sample and s.labels == labels:
                    return s.value
        return 0.0


async def scrape(client, path: str = "/metrics") -> Scrape:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return Scrape(await resp.text())


def check_documented(scrape: Scrape) -> None:
    """Every documented metric is served with its documented type, and its samples carry exactly the
    documented labels (plus `le` on histogram buckets)."""
    for name, (typ, labels) in documented_metrics().items():
        fam = scrape.family(name)
        assert fam is not None, f"{name} is documented but not served"
        assert fam.type == typ, (name, fam.type, typ)
        for s in fam.samples:
            got = set(s.labels) - ({"le"} if s.name.endswith("_bucket") else set())
            assert got == labels, (s.name, s.labels, labels)
    for prefix in ("process_resident_memory_bytes", "process_cpu_seconds", "python_gc_"):
        assert re.search(rf"^{prefix}", scrape.text, re.M), prefix


def published_item_count(catalog: dict) -> int:
    return len(catalog["beckn:items"])


async def test_scrape_after_publish_discover_and_fanout(network):
    # "live" answers the fan-out with its own catalog; "broken" fails with a 5xx and, with a circuit that
    # opens after one failure, is cut off.
    cds = await start_cds(network, fanout_timeout_ms=3000, circuit_failures=1)
    bpps = await start_bpps(network, {"live": {}, "broken": {"mode": "5xx"}})
    live, broken = bpps["live"].subscriber_id, bpps["broken"].subscriber_id
    started = time.time()
    try:
        # 1. a publish by the network's (caching) BPP, indexed and reported to it
        cached = await publish_cached(network, cds)
        published = load_fixture(PUBLISH_FIXTURE)["message"]["catalogs"]

        # 2. a discover with a broken signature: NACK
        sent = discover_doc(network)
        body = orjson.dumps(sent)
        headers = network.bap.sign(body)
        bad = dict(headers, Authorization=headers["Authorization"].replace('signature="', 'signature="AAAA'))
        assert (await cds.post("/beckn/discover", data=body, headers=bad)).status == 401

        # 3. the same discover, signed: ACK, fan-out to both targets, one merged on_discover to the BAP
        assert (await cds.post("/beckn/discover", data=body, headers=headers)).status == 200
        ((_path, _h, cb_body),) = await network.bap_sink.wait_for(1)
        merged = orjson.loads(cb_body)
        assert {b for b, _ in reply_items(merged)} == {network.bpp.subscriber_id, live}
        await asyncio.wait_for(bpps["live"].replied.wait(), 10)
        assert [status for status, _ in bpps["live"].reply_results] == [200]

        # the CDS counts a delivery once it has read the BAP's answer, just after the sink saw the request
        async def delivered() -> bool:
            return (await scrape(cds)).value("cds_callbacks_total", action="on_discover", outcome="delivered") > 0

        await wait_until(delivered, what="the on_discover delivery to be counted")
        s = await scrape(cds)
    finally:
        await cds.close()
        for b in bpps.values():
            await b.close()

    check_documented(s)
    # requests per action and outcome, with their latency
    assert s.value("cds_requests_total", action="catalog_publish", outcome="ack") == 1
    assert s.value("cds_requests_total", action="discover", outcome="ack") == 1
    assert s.value("cds_requests_total", action="discover", outcome="nack") == 1
    assert s.value("cds_requests_total", action="on_discover", outcome="ack") == 1     # live's reply
    for action, outcome in (("catalog_publish", "ack"), ("discover", "ack"), ("discover", "nack"),
                            ("on_discover", "ack")):
        assert s.value("cds_request_duration_seconds_count", action=action, outcome=outcome) == 1
        assert s.value("cds_request_duration_seconds_sum", action=action, outcome=outcome) > 0
    assert s.value("cds_nacks_total", action="discover", code="AUT_SIGNATURE_INVALID") == 1
    # callbacks
    assert s.value("cds_callbacks_total", action="on_catalog_publish", outcome="delivered") == 1
    assert s.value("cds_callbacks_total", action="on_discover", outcome="delivered") == 1
    assert s.value("cds_callback_duration_seconds_count", action="on_discover") == 1
    assert s.value("cds_callback_duration_seconds_sum", action="on_discover") > 0
    # the discover's answer and the search behind it
    assert s.value("cds_discover_items_count") == 1
    assert s.value("cds_discover_items_sum") == len(reply_items(merged)) > 0
    assert s.value("cds_search_duration_seconds_count", backend="embedded") >= 1
    # publish and index
    assert s.value("cds_publish_catalogs_total", status="ACCEPTED") == len(published)
    assert s.value("cds_publish_items_total") == sum(map(published_item_count, published))
    assert s.value("cds_publish_to_searchable_seconds_count") == len(published)
    assert s.value("cds_index_catalogs") >= len(published)
    assert s.value("cds_index_items") >= published_item_count(cached)
    # the newest publish was indexed during this test: its age is positive and no older than the test
    assert 0 < s.value("cds_index_freshness_lag_seconds") <= time.time() - started
    # fan-out, per BPP
    for bpp, result in ((live, "ack"), (broken, "error")):
        assert s.value("cds_fanout_requests_total", bpp=bpp) == 1
        assert s.value("cds_fanout_responses_total", bpp=bpp, result=result) == 1
    assert s.value("cds_fanout_replies_total", bpp=live, result="accepted") == 1
    assert s.value("cds_fanout_reply_seconds_count", bpp=live) == 1
    assert s.value("cds_fanout_targets_count") == 1 and s.value("cds_fanout_targets_sum") == 2
    assert s.value("cds_fanout_merged_callback_seconds_count", mode="async") == 1
    assert s.value("cds_fanout_circuit_open", bpp=broken) == 1
    assert s.value("cds_fanout_circuit_open", bpp=live) == 0
    assert s.value("cds_fanout_timeouts_total", bpp=live) == 0
    # ingest drained; the stream series exist and stay at 0 without Redis
    assert s.value("cds_ingest_pending") == 0
    for gauge in ("cds_ingest_backlog_bytes", "cds_ingest_stream_pending", "cds_ingest_consumer_lag",
                  "cds_ingest_dead_letters", "cds_ingest_partitions_held"):
        assert s.family(gauge).samples and s.value(gauge) == 0, gauge


async def test_registry_lookups_are_counted(network):
    cds = await start_cds(network)
    try:
        sent = orjson.dumps(discover_doc(network))
        for _ in range(2):  # the second lookup of the BAP's key is a cache hit
            resp = await cds.request("GET", "/beckn/discover", data=sent, headers=network.bap.sign(sent))
            assert resp.status == 200
        s = await scrape(cds)
    finally:
        await cds.close()
    assert s.value("cds_registry_lookups_total", result="miss") >= 1
    assert s.value("cds_registry_lookups_total", result="hit") >= 1


# ---- stream mode: the API and a real `cds indexer` process ------------------------------------------------

async def test_stream_mode_indexer_process_serves_metrics_and_probes(network, redis_url, tmp_path):
    import aiohttp

    settings = network.settings(redis_url=redis_url, indexer_in_api="false", **FAST)
    cds = await start_client(create_app(settings))
    port = free_port()
    proc = spawn_indexer(indexer_env(network, redis_url, tmp_path / "indexer-data", CDS_INDEXER_HOST="127.0.0.1",
                                     CDS_INDEXER_PORT=str(port)), tmp_path / "indexer.log")
    redis = Redis.from_url(redis_url)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def status(path: str) -> int:
                try:
                    async with http.get(base + path) as r:
                        return r.status
                except aiohttp.ClientError:
                    return 0

            async def indexer_ready() -> bool:
                assert proc.poll() is None, (tmp_path / "indexer.log").read_text()
                return await status("/health/ready") == 200

            await wait_until(indexer_ready, what="the indexer's /health/ready")
            assert await status("/health/live") == 200
            # one good publish through the API, and one entry that is no publish at all
            body = publish_body(network.bpp, ["scrape-a"])
            resp = await cds.post("/beckn/catalog/publish", data=body, headers=network.bpp.sign(body))
            assert resp.status == 200, await resp.text()
            stream = IngestStream.from_settings(redis, settings)
            await redis.xadd(stream.keys.stream(0), {"e": b"\x00not an entry", "p": "x.test", "n": 13})
            await network.bpp_sink.wait_for(1, timeout=30)

            async def indexer_scrape() -> Scrape:
                async with http.get(base + "/metrics") as r:
                    assert r.status == 200
                    return Scrape(await r.text())

            async def settled() -> bool:
                s = await indexer_scrape()
                return s.value("cds_ingest_dead_letters") == 1 and s.value("cds_ingest_pending") == 0

            await wait_until(settled, what="the stream drained with one dead letter")
            s = await indexer_scrape()
        await cds.server.app[INGEST].refresh()       # what the API's own refresh loop does
        api = await scrape(cds)
    finally:
        stop_indexer(proc)
        await redis.aclose()
        await cds.close()

    check_documented(s)
    assert s.value("cds_publish_catalogs_total", status="ACCEPTED") == 1
    assert s.value("cds_publish_items_total") == len(orjson.loads(body)["message"]["catalogs"][0]["beckn:items"])
    assert s.value("cds_callbacks_total", action="on_catalog_publish", outcome="delivered") == 1
    assert s.value("cds_ingest_partitions_held") == FAST["ingest_partitions"]   # the only worker holds them all
    assert s.value("cds_ingest_dead_lettered_total", reason="undecodable") == 1
    assert s.value("cds_ingest_stream_pending") == 0 and s.value("cds_ingest_consumer_lag") == 0
    assert s.family("cds_ingest_reclaimed_total").samples
    assert s.family("cds_ingest_index_unavailable_total").samples
    # the API took the publish (and counts it), the indexer process indexed it
    check_documented(api)
    assert api.value("cds_requests_total", action="catalog_publish", outcome="ack") == 1
    assert api.value("cds_publish_catalogs_total", status="ACCEPTED") == 0
    assert api.value("cds_ingest_dead_letters") == 1 and api.value("cds_ingest_pending") == 0
