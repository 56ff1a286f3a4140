"""Where callbacks may go (docs/decisions.md §29): public addresses by default; `--demo` adds loopback only,
never the other private ranges; CDS_ALLOW_PRIVATE_CALLBACKS opens every range."""

from __future__ import annotations

import socket

import pytest

from cds.config import load_settings
from cds.core.errors import BecknError
from cds.trust.netguard import (LOOPBACK, PRIVATE, PUBLIC, BlockedAddress, GuardedResolver, callback_reach,
                                check_callback_url)
from cds.trust.outbound import Outbound, Signer, make_session
from tests.harness import CallbackSink

FORBIDDEN_IN_DEMO = ["http://10.1.2.3/bap", "http://169.254.169.254/latest/meta-data", "http://192.168.1.1/x",
                     "http://172.16.0.1/x", "http://[fd00::1]/x", "http://[::ffff:10.0.0.1]/x", "http://0.0.0.0:80/x"]
LOOPBACKS = ["http://127.0.0.1:9000/bap", "http://127.5.6.7/x", "http://[::1]:9000/x", "http://localhost:9000/x"]


@pytest.fixture
def demo_settings(tmp_path, monkeypatch):
    for name in ("CDS_ALLOW_PRIVATE_CALLBACKS", "CDS_ALLOW_LOOPBACK_CALLBACKS", "CDS_REGISTRY_FILE",
                 "CDS_REGISTRY_URL", "CDS_SIGNING_PRIVATE_KEY", "CDS_SUBSCRIBER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path / "data"))
    from cds.demo.seed import demo_overrides

    return load_settings(**demo_overrides(host="127.0.0.1", port=8080))


def check(url: str, reach: str) -> str:
    return check_callback_url(url, registered_url=None, reach=reach)


def test_demo_allows_loopback_callbacks_only(demo_settings):
    reach = callback_reach(demo_settings)
    assert reach == LOOPBACK and not demo_settings.allow_private_callbacks
    for url in FORBIDDEN_IN_DEMO:
        with pytest.raises(BecknError) as err:
            check(url, reach)
        assert (err.value.status, err.value.code) == (400, "CTX_INVALID_FIELD"), url
    for url in LOOPBACKS:
        assert check(url, reach) == url


def test_default_allows_public_only_and_private_mode_allows_all():
    assert callback_reach(load_settings({})) == PUBLIC
    assert callback_reach(load_settings({"CDS_ALLOW_PRIVATE_CALLBACKS": "true"})) == PRIVATE
    for url in FORBIDDEN_IN_DEMO + LOOPBACKS:
        with pytest.raises(BecknError):
            check(url, PUBLIC)
        assert check(url, PRIVATE) == url
    assert check("https://8.8.8.8/bap", PUBLIC) == "https://8.8.8.8/bap"


class FixedResolver:
    """Stands in for DNS: every name resolves to the given addresses."""

    def __init__(self, *ips: str) -> None:
        self.ips = ips

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": ip, "port": port, "family": family, "proto": 0, "flags": 0}
                for ip in self.ips]

    async def close(self) -> None:
        pass


async def test_names_resolving_to_private_ranges_are_refused_in_demo():
    with pytest.raises(BlockedAddress):
        await GuardedResolver(LOOPBACK, FixedResolver("10.0.0.7", "169.254.169.254")).resolve("rebind.example")
    kept = await GuardedResolver(LOOPBACK, FixedResolver("10.0.0.7", "127.0.0.1")).resolve("mixed.example")
    assert [i["host"] for i in kept] == ["127.0.0.1"]


async def test_demo_delivers_to_loopback_and_never_connects_to_metadata_address(demo_settings):
    sink = await CallbackSink().start()
    session = make_session(demo_settings)
    try:
        out = Outbound(session, Signer(demo_settings), demo_settings)
        ok = await out.post(sink.url + "/bap/on_discover", {"x": 1}, retries=0)
        assert ok.ok, ok.error
        for url in ("http://169.254.169.254/latest/on_discover", "http://10.255.255.1/bap/on_discover"):
            refused = await out.post(url, {"x": 1}, retries=2, timeout=30)
            assert not refused.ok and refused.attempts == 1 and refused.error.startswith("blocked"), refused
    finally:
        await session.close()
        await sink.close()
