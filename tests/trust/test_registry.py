"""Registry client against a real HTTP server playing the remote registry (legacy /lookup and the DeDi wrapper)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cds.config import Settings
from cds.core.errors import (
    AUT_KEY_EXPIRED_OR_REVOKED,
    AUT_KEY_NOT_FOUND,
    AUT_SUBSCRIBER_NOT_FOUND,
    NET_DOWNSTREAM_UNAVAILABLE,
    BecknError,
)
from cds.trust.dedi import DediSource
from cds.trust.registry_factory import build_registry
from cds.trust.key_cache import MemoryKeyCache
from cds.trust.registry import Registry
from cds.trust.registry_sources import FileSource, LookupSource
from cds.trust.subscribers import Subscriber
from tests.fake_registry import FakeRegistry, member

T0 = 1_750_000_000.0
EV = "beckn.one:deg:ev-charging"
PUB1 = "awGPjRK6i/Vg/lWr+0xObclVxlwZXvTjWYtlu6NeOHk="
PUB2 = "7YRZXVeIJ0/Va56vYgzT1Uirg6mnq3FY0MBZY9DJft0="


def iso(t: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def rec(sid: str, kid: str | None = "k1", *, type: str = "BPP", domain: Any = EV, key: str | None = PUB1,
        status: str = "SUBSCRIBED", valid_from: float = T0 - 86400, valid_until: float = T0 + 86400) -> dict[str, Any]:
    r: dict[str, Any] = {"subscriber_id": sid, "type": type, "domain": domain, "url": f"https://{sid}/beckn",
                         "status": status, "valid_from": iso(valid_from), "valid_until": iso(valid_until)}
    if kid is not None:
        r["key_id"] = kid
    if key is not None:
        r["signing_public_key"] = key
    return r


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def remote():
    fake = FakeRegistry()
    server = TestServer(fake.app())
    await server.start_server()
    fake.base = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as session:
        fake.session = session  # type: ignore[attr-defined]
        yield fake
    await server.close()


def make(remote: FakeRegistry, kind: str = "lookup", clock: Clock | None = None, **kw: Any) -> tuple[Registry, Clock]:
    clock = clock or Clock()
    src = (LookupSource(remote.base, remote.session, timeout_s=kw.pop("timeout_s", 3.0)) if kind == "lookup"
           else DediSource(remote.base + "/dedi", remote.session, timeout_s=kw.pop("timeout_s", 3.0)))
    sources = kw.pop("before", []) + [src]
    return Registry(sources, MemoryKeyCache(clock=clock), clock=clock, **kw), clock


async def code_of(coro: Any) -> str:
    with pytest.raises(BecknError) as e:
        await coro
    return e.value.code


# ---------------------------------------------------------------- lookups and caching

@pytest.mark.parametrize("kind", ["lookup", "dedi"])
async def test_lookup_then_cache_hit(remote, kind):
    remote.records = [rec("bpp.one", "k1"), rec("bpp.one", "k2", key=PUB2)]
    reg, _ = make(remote, kind)
    s = await reg.lookup_key("bpp.one", "k2")
    assert (s.subscriber_id, s.key_id, s.signing_public_key, s.type, s.url) == \
        ("bpp.one", "k2", PUB2, "BPP", "https://bpp.one/beckn")
    assert len(remote.calls) == 1
    assert (await reg.lookup_key("bpp.one", "k2")).signing_public_key == PUB2
    assert len(remote.calls) == 1                     # served from the cache
    assert (await reg.lookup_key("bpp.one", "k1")).signing_public_key == PUB1
    assert len(remote.calls) == 2                     # another key is another entry


async def test_legacy_lookup_request_body(remote):
    remote.records = [rec("bpp.one")]
    reg, _ = make(remote)
    await reg.lookup_key("bpp.one", "k1")
    assert remote.calls == [("lookup", {"subscriber_id": "bpp.one", "key_id": "k1"})]


async def test_dedi_path_namespace_and_odd_ids(remote):
    remote.records = [rec("did:web:bpp.example.com", "76EU7PktCX")]
    reg, _ = make(remote, "dedi")
    s = await reg.lookup_key("did:web:bpp.example.com", "76EU7PktCX")
    assert s.key_id == "76EU7PktCX" and s.status == "SUBSCRIBED" and s.valid_until is None
    assert remote.calls == [("dedi", "did:web:bpp.example.com", "subscribers.beckn.one", "76EU7PktCX")]
    # a slash in an id must not change the path the wrapper sees
    assert await code_of(reg.lookup_key("a/b", "k")) == AUT_SUBSCRIBER_NOT_FOUND
    assert remote.calls[-1] == ("dedi", "a/b", "subscribers.beckn.one", "k")


async def test_dedi_state_other_than_live_is_revoked(remote):
    r = rec("bpp.one")
    r["_data"] = {"state": "expired"}
    remote.records = [r]
    reg, _ = make(remote, "dedi")
    assert await code_of(reg.lookup_key("bpp.one", "k1")) == AUT_KEY_EXPIRED_OR_REVOKED


async def test_ttl_expiry_with_clock(remote):
    remote.records = [rec("bpp.one")]
    reg, clock = make(remote, ttl_s=300)
    await reg.lookup_key("bpp.one", "k1")
    clock.t += 299
    await reg.lookup_key("bpp.one", "k1")
    assert len(remote.calls) == 1
    remote.records = [rec("bpp.one", status="UNSUBSCRIBED")]   # revoked at the registry
    clock.t += 2
    assert await code_of(reg.lookup_key("bpp.one", "k1")) == AUT_KEY_EXPIRED_OR_REVOKED
    assert len(remote.calls) == 2


async def test_positive_ttl_capped_by_valid_until(remote):
    remote.records = [rec("bpp.one", valid_until=T0 + 100)]
    reg, clock = make(remote, ttl_s=300)
    await reg.lookup_key("bpp.one", "k1")
    remote.records = [rec("bpp.one", valid_until=T0 + 10_000)]   # key renewed
    clock.t += 99
    await reg.lookup_key("bpp.one", "k1")
    assert len(remote.calls) == 1
    clock.t += 2              # past the old valid_until: the entry is gone, the renewed record is fetched
    assert (await reg.lookup_key("bpp.one", "k1")).valid_until == T0 + 10_000
    assert len(remote.calls) == 2


async def test_negative_caching_keeps_the_code(remote):
    remote.records = [rec("bpp.one", "k1")]
    reg, clock = make(remote, negative_ttl_s=15)
    assert await code_of(reg.lookup_key("nobody", "k1")) == AUT_SUBSCRIBER_NOT_FOUND
    n = len(remote.calls)
    assert await code_of(reg.lookup_key("nobody", "k1")) == AUT_SUBSCRIBER_NOT_FOUND
    assert len(remote.calls) == n
    clock.t += 16
    remote.records.append(rec("nobody", "k1"))
    assert (await reg.lookup_key("nobody", "k1")).subscriber_id == "nobody"
    assert len(remote.calls) == n + 1


async def test_error_codes(remote):
    remote.records = [
        rec("bpp.one", "k1"),
        rec("revoked.one", status="UNSUBSCRIBED"),
        rec("expired.one", valid_until=T0 - 1),
        rec("future.one", valid_from=T0 + 60),
        rec("keyless.one", key=None),
    ]
    reg, _ = make(remote)
    assert await code_of(reg.lookup_key("bpp.one", "other-key")) == AUT_KEY_NOT_FOUND
    assert await code_of(reg.lookup_key("bpp.one", "other-key")) == AUT_KEY_NOT_FOUND   # cached negative
    assert await code_of(reg.lookup_key("revoked.one", "k1")) == AUT_KEY_EXPIRED_OR_REVOKED
    assert await code_of(reg.lookup_key("expired.one", "k1")) == AUT_KEY_EXPIRED_OR_REVOKED
    assert await code_of(reg.lookup_key("future.one", "k1")) == AUT_KEY_EXPIRED_OR_REVOKED
    assert await code_of(reg.lookup_key("keyless.one", "k1")) == AUT_KEY_NOT_FOUND
    assert await code_of(reg.lookup_key("", "k1")) == AUT_SUBSCRIBER_NOT_FOUND
    assert await code_of(reg.lookup_key("x" * 10_000, "k1")) == AUT_SUBSCRIBER_NOT_FOUND
    with pytest.raises(BecknError) as e:
        await reg.lookup_key("nobody", "k1")
    assert e.value.status == 401


async def test_record_expiring_while_cached_in_a_shared_cache_is_refused(remote):
    # A cache that ignores our TTL (e.g. one shared across replicas) must not let an expired key through.
    remote.records = [rec("bpp.one", valid_until=T0 + 100)]
    clock = Clock()

    class Forever(MemoryKeyCache):
        async def set(self, key, value, ttl_s):
            await super().set(key, value, 1e9)

    reg = Registry([LookupSource(remote.base, remote.session)], Forever(clock=clock), clock=clock)
    await reg.lookup_key("bpp.one", "k1")
    clock.t += 101
    assert await code_of(reg.lookup_key("bpp.one", "k1")) == AUT_KEY_EXPIRED_OR_REVOKED


async def test_single_in_flight(remote):
    remote.records = [rec("bpp.one")]
    remote.gate = asyncio.Event()
    reg, _ = make(remote)
    tasks = [asyncio.create_task(reg.lookup_key("bpp.one", "k1")) for _ in range(50)]
    while not remote.calls:
        await asyncio.sleep(0.001)
    tasks[0].cancel()                       # a caller giving up must not cancel the shared lookup
    remote.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, Subscriber) and r.signing_public_key == PUB1 for r in results[1:])
    assert len(remote.calls) == 1


async def test_single_in_flight_shares_errors(remote):
    remote.gate = asyncio.Event()
    reg, _ = make(remote)
    tasks = [asyncio.create_task(reg.lookup_key("nobody", "k1")) for _ in range(20)]
    while not remote.calls:
        await asyncio.sleep(0.001)
    remote.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, BecknError) and r.code == AUT_SUBSCRIBER_NOT_FOUND for r in results)
    # one lookup: the key-filtered query and its follow-up by subscriber id, nothing more
    assert remote.calls == [("lookup", {"subscriber_id": "nobody", "key_id": "k1"}),
                            ("lookup", {"subscriber_id": "nobody"})]


# ---------------------------------------------------------------- outages

@pytest.mark.parametrize("kind", ["lookup", "dedi"])
@pytest.mark.parametrize("status", [500, 503, 429, 401])
async def test_registry_error_status_is_503_and_not_cached(remote, kind, status):
    remote.records = [rec("bpp.one")]
    remote.fail_status = status
    reg, _ = make(remote, kind)
    with pytest.raises(BecknError) as e:
        await reg.lookup_key("bpp.one", "k1")
    assert (e.value.code, e.value.status) == (NET_DOWNSTREAM_UNAVAILABLE, 503)
    remote.fail_status = None
    assert (await reg.lookup_key("bpp.one", "k1")).subscriber_id == "bpp.one"   # no clock advance needed


async def test_registry_timeout_is_503(remote):
    remote.records = [rec("bpp.one")]
    remote.stall_s = 2.0
    reg, _ = make(remote, timeout_s=0.2)
    assert await code_of(reg.lookup_key("bpp.one", "k1")) == NET_DOWNSTREAM_UNAVAILABLE


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"not": "a list"}', b"[" + b'"x",' * 400_000 + b'"x"]'])
async def test_registry_garbage_is_503(remote, body):
    remote.raw_body = body
    reg, _ = make(remote)
    assert await code_of(reg.lookup_key("bpp.one", "k1")) == NET_DOWNSTREAM_UNAVAILABLE


async def test_malformed_records_are_skipped(remote):
    remote.raw_body = json.dumps([{"no": "id"}, {**rec("bpp.one"), "valid_until": "not a date"}, rec("bpp.one", "k2")]).encode()
    reg, _ = make(remote)
    assert (await reg.lookup_key("bpp.one", "k2")).key_id == "k2"
    assert await code_of(reg.lookup_key("bpp.one", "k1")) == AUT_KEY_NOT_FOUND


# ---------------------------------------------------------------- sources in order

def write(path: Path, records: list[dict[str, Any]], mtime: float | None = None) -> None:
    path.write_text(json.dumps(records))
    if mtime is not None:
        os.utime(path, (mtime, mtime))


async def test_file_source_first_then_remote(remote, tmp_path):
    f = tmp_path / "registry.json"
    write(f, [rec("local.bpp", key=PUB2)])
    remote.records = [rec("remote.bpp"), rec("local.bpp", "k9")]
    reg, _ = make(remote, before=[FileSource(f)])
    assert (await reg.lookup_key("local.bpp", "k1")).signing_public_key == PUB2
    assert remote.calls == []                              # the file knew it
    # the file knows local.bpp, so it decides: k9 (only at the remote) is not this subscriber's key
    assert await code_of(reg.lookup_key("local.bpp", "k9")) == AUT_KEY_NOT_FOUND
    assert (await reg.lookup_key("remote.bpp", "k1")).subscriber_id == "remote.bpp"
    assert len(remote.calls) == 1


async def test_remote_down_but_file_knows(remote, tmp_path):
    f = tmp_path / "registry.json"
    write(f, [rec("local.bpp")])
    remote.fail_status = 500
    reg, _ = make(remote, before=[FileSource(f)])
    assert (await reg.lookup_key("local.bpp", "k1")).subscriber_id == "local.bpp"
    assert await code_of(reg.lookup_key("other.bpp", "k1")) == NET_DOWNSTREAM_UNAVAILABLE


# ---------------------------------------------------------------- subscriber() and listing

async def test_subscriber_lookup(remote):
    remote.records = [rec("bap.one", type="BAP"), rec("gone.one", status="EXPIRED")]
    reg, _ = make(remote)
    s = await reg.subscriber("bap.one")
    assert s is not None and s.url == "https://bap.one/beckn" and s.type == "BAP"
    assert await reg.subscriber("gone.one") is None
    assert await reg.subscriber("nobody") is None
    n = len(remote.calls)
    assert (await reg.subscriber("bap.one")) is not None and len(remote.calls) == n   # cached


async def test_subscriber_on_dedi_uses_the_key_lookup(remote):
    remote.records = [rec("bap.one", type="BAP")]
    reg, _ = make(remote, "dedi")
    await reg.lookup_key("bap.one", "k1")
    s = await reg.subscriber("bap.one")
    assert s is not None and s.url == "https://bap.one/beckn"
    assert len(remote.calls) == 1


def _network() -> list[dict[str, Any]]:
    return [
        rec("bare.bpp", domain=EV),
        rec("versioned.bpp", domain=EV + ":2.0.0"),
        rec("multi.bpp", domain=["nic2004:60212", EV + ":*"]),
        rec("other.bpp", domain="nic2004:60212"),
        rec("revoked.bpp", domain=EV, status="UNSUBSCRIBED"),
        rec("expired.bpp", domain=EV, valid_until=T0 - 1),
        rec("a.bap", domain=EV, type="BAP"),
        rec("bare.bpp", "k2", domain=EV),       # second key of the same BPP
    ]


async def test_list_bpps_from_file_by_domain_family(tmp_path):
    f = tmp_path / "registry.json"
    write(f, _network())
    clock = Clock()
    reg = Registry([FileSource(f)], MemoryKeyCache(clock=clock), clock=clock)
    for d in (EV, EV + ":*", EV + ":2.0.0", "BECKN.ONE:deg:ev-charging"):
        assert sorted(r.subscriber_id for r in await reg.list_bpps(d)) == ["bare.bpp", "multi.bpp", "versioned.bpp"]
    assert [r.subscriber_id for r in await reg.list_bpps("nic2004:60212")] == ["multi.bpp", "other.bpp"]
    assert await reg.list_bpps("nic2004") == []


async def test_list_bpps_via_lookup_cached_and_every_form_asked(remote):
    remote.records = _network()
    reg, clock = make(remote, list_ttl_s=30)
    got = await reg.list_bpps(EV + ":2.0.0")
    # exact-match registry (docs/decisions.md §26): asked without a domain, then for every form of the family
    assert sorted(str(b.get("domain")) for _, b in remote.calls) == sorted(["None", EV, EV + ":*", EV + ":2.0.0"])
    assert all(b["type"] == "BPP" for _, b in remote.calls)
    assert sorted(r.subscriber_id for r in got) == ["bare.bpp", "multi.bpp", "versioned.bpp"]
    await reg.list_bpps(EV + ":2.0.0")
    assert len(remote.calls) == 4
    clock.t += 31
    await reg.list_bpps(EV)                  # the bare family: no version form
    assert len(remote.calls) == 7


async def test_list_bpps_per_form_when_the_registry_refuses_an_unfiltered_query(remote):
    """A registry that answers a query without a domain with 400 still yields the BPPs of every form."""
    remote.records = _network()
    remote.need_domain = True
    reg, _ = make(remote)
    got = await reg.list_bpps(EV, version="2.0.0")
    assert sorted(r.subscriber_id for r in got) == ["bare.bpp", "multi.bpp", "versioned.bpp"]


async def test_list_bpps_a_failing_form_is_an_outage_unless_the_unfiltered_answer_covers_it(remote):
    remote.records = _network()
    remote.fail_domains = {EV + ":*"}
    reg, clock = make(remote, list_ttl_s=30)
    assert sorted(r.subscriber_id for r in await reg.list_bpps(EV)) == ["bare.bpp", "multi.bpp", "versioned.bpp"]
    remote.need_domain = True                 # now only the per-form answers count, and one of them fails
    reg2, _ = make(remote)
    assert await code_of(reg2.list_bpps(EV)) == NET_DOWNSTREAM_UNAVAILABLE


async def test_list_bpps_an_unfiltered_answer_too_large_is_covered_by_the_forms(remote, monkeypatch):
    """A big multi-domain registry: the answer without a domain exceeds our bound; every form answered."""
    from cds.trust import registry_sources

    remote.records = _network() + [rec(f"bulk{k}.bpp", domain="nic2004:60212") for k in range(200)]
    monkeypatch.setattr(registry_sources, "MAX_LIST_BYTES", 20_000)
    reg, _ = make(remote)
    got = await reg.list_bpps(EV, version="2.0.0")
    assert sorted(r.subscriber_id for r in got) == ["bare.bpp", "multi.bpp", "versioned.bpp"]


async def test_list_bpps_outage_serves_last_list(remote):
    remote.records = _network()
    reg, clock = make(remote, list_ttl_s=30)
    first = [r.subscriber_id for r in await reg.list_bpps(EV)]
    assert sorted(first) == ["bare.bpp", "multi.bpp", "versioned.bpp"]
    remote.fail_status = 500
    clock.t += 31
    assert [r.subscriber_id for r in await reg.list_bpps(EV)] == first
    reg2, _ = make(remote)
    assert await code_of(reg2.list_bpps(EV)) == NET_DOWNSTREAM_UNAVAILABLE


async def test_dedi_cannot_list_without_the_network_registry(remote):
    remote.records = _network()
    reg, _ = make(remote, "dedi")
    assert await reg.list_bpps(EV) == []
    assert remote.calls == []


def _dedi_lister(remote: FakeRegistry, clock: Clock | None = None, **kw: Any) -> tuple[Registry, Clock]:
    clock = clock or Clock()
    src = DediSource(remote.base + "/dedi", remote.session, network_namespace="ubc.nbsl",
                     network_registry="members")
    return Registry([src], MemoryKeyCache(clock=clock), clock=clock, **kw), clock


async def test_dedi_lists_the_operators_members_and_looks_each_up(remote):
    """docs/decisions.md §26: page through the registry of members, look each member up, keep the family's BPPs."""
    remote.records = _network() + [rec("ref.bpp", "ref-key", domain=EV + ":*")]
    remote.members = [
        member({"subscriber_id": "bare.bpp", "key_id": "k1"}),                     # looked up by key id
        member({"subscriber_id": "versioned.bpp", "ukId": "k1"}),
        member({"subscriber_id": "ref.bpp", "type": "Record",                        # a reference record
                 "url": remote.base + "/raw/lookup/ref-company/subscription-details/ref-key"}),
        member({"subscriber_id": "inline.bpp", "type": "BPP", "domain": EV + ":2.0.0",  # a whole record
                 "url": "https://inline.bpp/beckn"}),
        member({"subscriber_id": "other.bpp", "key_id": "k1"}),                      # another domain
        member({"subscriber_id": "a.bap", "key_id": "k1"}),                          # not a BPP
        member({"subscriber_id": "revoked.bpp", "key_id": "k1"}, state="revoked"),   # never looked up
        member({"subscriber_id": "gone.bpp", "key_id": "k9"}),                       # lookup: 404
    ]
    reg, clock = _dedi_lister(remote, list_ttl_s=30)
    got = await reg.list_bpps(EV)
    assert sorted(r.subscriber_id for r in got) == ["bare.bpp", "inline.bpp", "ref.bpp", "versioned.bpp"]
    assert [c[3] for c in remote.calls if c[0] == "query"] == [1, 2, 3, 4]        # every page, in order
    looked_up = sorted(c[1] for c in remote.calls if c[0] == "dedi")
    assert looked_up == ["a.bap", "bare.bpp", "gone.bpp", "other.bpp", "versioned.bpp"]
    assert [c for c in remote.calls if c[0] == "raw"] == [("raw", "ref-key")]
    n = len(remote.calls)
    await reg.list_bpps(EV + ":2.0.0")                                          # cached for the family
    assert len(remote.calls) == n
    clock.t += 31
    await reg.list_bpps(EV)
    assert len(remote.calls) == 2 * n                                           # refreshed after list_ttl_s


async def test_dedi_listing_outage(remote):
    remote.records = _network()
    remote.members = [member({"subscriber_id": "bare.bpp", "key_id": "k1"})]
    reg, clock = _dedi_lister(remote, list_ttl_s=30)
    assert [r.subscriber_id for r in await reg.list_bpps(EV)] == ["bare.bpp"]
    remote.fail_status = 500
    clock.t += 31
    assert [r.subscriber_id for r in await reg.list_bpps(EV)] == ["bare.bpp"]  # the last list, briefly
    reg2, _ = _dedi_lister(remote)
    assert await code_of(reg2.list_bpps(EV)) == NET_DOWNSTREAM_UNAVAILABLE


# ---------------------------------------------------------------- pieces

def test_build_registry(tmp_path):
    f = tmp_path / "r.json"
    write(f, [])

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            reg = build_registry(Settings(registry_file=str(f), registry_url="http://r.example/dedi",
                                          registry_type="dedi", registry_namespace="ns.x", key_cache_ttl_s=120),
                                 session)
            assert [type(s) for s in reg.sources] == [FileSource, DediSource]
            assert reg.sources[1].namespace == "ns.x" and reg.ttl_s == 120
            reg = build_registry(Settings(registry_url="http://r.example"), session)
            assert [type(s) for s in reg.sources] == [LookupSource]
            assert reg.sources[0].url == "http://r.example/lookup"
            await reg.close()

    asyncio.run(run())
