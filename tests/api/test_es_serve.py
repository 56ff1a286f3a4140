"""`cds serve` on a real Elasticsearch, end to end, as an operator runs it from a fresh shell:
`cds index init`, then `cds serve` with CDS_ES_URL; a signed publish is indexed and reported, a signed
GET discover answers exactly what the embedded backend answers; /health/ready follows the cluster
(503 while it is stopped, 200 after it restarts) and names `cds index init` before the indices exist;
`cds index init` against an unreachable server prints one line and exits 2."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests import es_server
from tests.es_server import free_port
from tests.harness import FIXTURES
from tests.api.test_api_protocol import discover_body, publish_body

pytestmark = [pytest.mark.es, pytest.mark.slow]

QR_ITEM = "IND*ecopower-charging*cs-01*IN*ECO*BTM*01*CCS2*A*CCS2-A"   # the UBC catalog's item found by QR
DISCOVERIES = sorted(p.name for p in FIXTURES.glob("UBC_discovery-*.json"))


def cds_env(network, data_dir: Path, es_url: str | None, prefix: str | None = None) -> dict[str, str]:
    """A fresh shell's environment: nothing CDS_* inherited, only what the operator sets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update({"CDS_SUBSCRIBER_ID": network.cds.subscriber_id, "CDS_KEY_ID": network.cds.key_id,
                "CDS_SIGNING_PRIVATE_KEY": network.cds_seed, "CDS_REGISTRY_FILE": str(network.registry_file),
                "CDS_DATA_DIR": str(data_dir), "CDS_ALLOW_PRIVATE_CALLBACKS": "true",
                "CDS_SUBSCRIBER_URL": "http://127.0.0.1:1/beckn", "CDS_CALLBACK_RETRIES": "1",
                "CDS_CALLBACK_TIMEOUT_S": "2"})
    if es_url:
        env["CDS_ES_URL"] = es_url
        env["CDS_ES_INDEX_PREFIX"] = prefix or f"cdsserve-{uuid.uuid4().hex[:10]}"
    return env


def cds_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cds", *args], env=env, cwd=env["CDS_DATA_DIR"],
                          capture_output=True, text=True, timeout=timeout)


class Served:
    """`python -m cds serve` as a subprocess (output in a log file: a full pipe would block it)."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cds", "serve", "--port", str(self.port)],
                                         env=env, cwd=env["CDS_DATA_DIR"], stdout=out, stderr=subprocess.STDOUT)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    async def wait_live(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"cds serve exited:\n{self.output()}"
            try:
                async with self.http.get(self.base + "/health/live") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"cds serve did not come up:\n{self.output()}"
            await asyncio.sleep(0.2)

    async def ready(self) -> tuple[int, dict]:
        async with self.http.get(self.base + "/health/ready") as r:
            return r.status, await r.json()

    async def ready_becomes(self, status: int, timeout: float = 30) -> dict:
        """Poll /health/ready until it answers `status` (a bound for liveness, not a speed assertion)."""
        deadline = time.monotonic() + timeout
        while True:
            got, doc = await self.ready()
            if got == status:
                return doc
            assert time.monotonic() < deadline, f"/health/ready stayed {got} ({doc}), expected {status}"
            await asyncio.sleep(0.2)

    async def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        async with self.http.request(method, self.base + path, data=body, headers=headers) as r:
            return r.status, orjson.loads(await r.read())

    async def close(self) -> None:
        await self.http.close()
        self.proc.terminate()
        try:
            await asyncio.to_thread(self.proc.wait, 15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 5)


async def index_names(es_url: str, prefix: str, *, drop: bool = False) -> list[str]:
    """The indices under `prefix` (deleted first if `drop`: they are returned as they were)."""
    from elasticsearch import AsyncElasticsearch

    es = AsyncElasticsearch(es_url, node_class="aiohttp")
    try:
        names = sorted(await es.indices.get(index=f"{prefix}-*", expand_wildcards="all"))
        if names and drop:
            await es.indices.delete(index=",".join(names))
        return names
    finally:
        await es.close()


async def drop_indices(es_url: str, prefix: str) -> None:
    await index_names(es_url, prefix, drop=True)


def callback_results(sink_entry) -> list[dict]:
    path, _headers, body = sink_entry
    assert path == "/bpp/on_catalog_publish"
    return orjson.loads(body)["message"]["results"]


async def test_serve_on_elasticsearch_answers_like_the_embedded_backend(network, cds, es_url, tmp_path):
    data = tmp_path / "es-serve"
    data.mkdir()
    env = cds_env(network, data, es_url)
    prefix = env["CDS_ES_INDEX_PREFIX"]
    try:
        init = await asyncio.to_thread(cds_cli, env, "index", "init")
        assert init.returncode == 0, init.stderr
        assert f"created {prefix}-items-v" in init.stdout and f"created {prefix}-catalogs-v" in init.stdout
        again = await asyncio.to_thread(cds_cli, env, "index", "init")   # idempotent
        assert again.returncode == 0 and "up to date" in again.stdout, again.stderr

        served = Served(env, tmp_path)
        try:
            await served.wait_live()
            doc = await served.ready_becomes(200)
            assert doc["checks"] == {"storage": True, "backend": "elasticsearch"}

            # the same signed publish to the ES-backed process and to the embedded in-process CDS
            body = publish_body(network)
            status, ack = await served.send("POST", "/beckn/catalog/publish", body, network.bpp.sign(body))
            assert status == 200 and ack["message"]["ack"]["status"] == "ACK", ack
            (first,) = await network.bpp_sink.wait_for(1, timeout=60)
            (result,) = callback_results(first)
            assert result == {**result, "catalog_id": "catalog-ev-charging-001", "status": "ACCEPTED",
                              "item_count": 3}
            assert (await cds.post("/beckn/catalog/publish", data=body, headers=network.bpp.sign(body))).status == 200
            await network.bpp_sink.wait_for(2, timeout=30)

            found_qr, answered = False, 0
            for name in DISCOVERIES:
                q = discover_body(network, name)
                status, es_doc = await served.send("GET", "/beckn/discover", q, network.bap.sign(q))
                assert status == 200, (name, es_doc)
                resp = await cds.request("GET", "/beckn/discover", data=q, headers=network.bap.sign(q))
                assert resp.status == 200
                embedded_doc = orjson.loads(await resp.read())
                assert es_doc["context"]["action"] == "on_discover"
                assert es_doc["message"] == embedded_doc["message"], name
                items = [i["beckn:id"] for c in es_doc["message"]["catalogs"] for i in c["beckn:items"]]
                answered += bool(items)
                if name == "UBC_discovery-by-QR.json":
                    # independent of both backends: the QR names exactly this connector of the published catalog
                    assert items == [QR_ITEM]
                    assert es_doc["message"]["catalogs"][0]["beckn:bppId"] == network.bpp.subscriber_id
                    found_qr = True
            assert found_qr and answered >= 3   # the comparison covered real answers, not only empty ones
        finally:
            await served.close()
    finally:
        await drop_indices(es_url, prefix)


async def test_ready_names_index_init_until_the_indices_exist(network, es_url, tmp_path):
    data = tmp_path / "no-init"
    data.mkdir()
    env = cds_env(network, data, es_url)
    served = Served(env, tmp_path)
    try:
        await served.wait_live()
        status, doc = await served.ready()
        assert status == 503, doc
        assert doc["checks"] == {"storage": False, "backend": "elasticsearch"}
        assert "cds index init" in doc["hint"]
        # a discover does not create them ("never silently at request time") ...
        q = discover_body(network, "UBC_discovery-by-QR.json")
        await served.send("GET", "/beckn/discover", q, network.bap.sign(q))
        assert await index_names(es_url, env["CDS_ES_INDEX_PREFIX"]) == []
        assert (await served.ready())[0] == 503
        # ... the operator does, and the running process becomes ready without a restart
        init = await asyncio.to_thread(cds_cli, env, "index", "init")
        assert init.returncode == 0, init.stderr
        doc = await served.ready_becomes(200)
        assert "hint" not in doc
    finally:
        await served.close()
        await drop_indices(es_url, env["CDS_ES_INDEX_PREFIX"])


async def test_ready_follows_the_cluster_through_a_restart(network, tmp_path):
    # a short-lived server of its own: the session's one is not disturbed
    try:
        server = await asyncio.to_thread(es_server.start)
    except es_server.EsUnavailable as e:    # e.g. CDS_TEST_ES_URL given on a machine without Java
        es_server.skip_loudly(str(e))
    served = None
    try:
        data = tmp_path / "restart"
        data.mkdir()
        env = cds_env(network, data, server.url)
        init = await asyncio.to_thread(cds_cli, env, "index", "init")
        assert init.returncode == 0, init.stderr
        served = Served(env, tmp_path)
        await served.wait_live()
        await served.ready_becomes(200)
        body = publish_body(network)
        status, _ = await served.send("POST", "/beckn/catalog/publish", body, network.bpp.sign(body))
        assert status == 200
        (result,) = callback_results((await network.bpp_sink.wait_for(1, timeout=60))[0])
        assert result["status"] == "ACCEPTED"

        await asyncio.to_thread(server.stop)
        doc = await served.ready_becomes(503)
        assert doc["checks"]["storage"] is False and "cds index init" in doc["hint"]
        assert served.proc.poll() is None          # the API stays up while the cluster is away

        server = await asyncio.to_thread(es_server.start, server.port, server.workdir)
        await served.ready_becomes(200, timeout=60)
        q = discover_body(network, "UBC_discovery-by-QR.json")   # the data survived the restart
        status, doc = await served.send("GET", "/beckn/discover", q, network.bap.sign(q))
        assert status == 200
        assert [i["beckn:id"] for c in doc["message"]["catalogs"] for i in c["beckn:items"]] == [QR_ITEM]
    finally:
        if served is not None:
            await served.close()
        await asyncio.to_thread(server.cleanup)


async def test_index_init_on_an_unreachable_server_is_one_clear_line(network, tmp_path):
    port = free_port()   # nothing listens there
    env = cds_env(network, tmp_path, f"http://elastic:s3cret@127.0.0.1:{port}")
    p = await asyncio.to_thread(cds_cli, env, "index", "init")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "Elasticsearch" in lines[0]
    assert "s3cret" not in p.stderr     # credentials in the URL are not printed
