"""Fan-out targets however a BPP registered its domain (docs/decisions.md §1, §26): with a registry that filters
domains exactly, and with DeDi listing the network operator's registry of members. Real HTTP throughout: a fake
remote registry, mock BPPs signing their replies with keys only that registry knows, the CDS on loopback."""

from __future__ import annotations

import orjson
import pytest
from aiohttp.test_utils import TestServer

from tests.fake_registry import FakeRegistry, member
from tests.harness import Participant
from tests.fanout_mocks import MockBpp, catalog_for, discover_doc, expected_items, reply_items, start_cds

EV = "beckn.one:deg:ev-charging"
FORMS = {"bare": EV, "star": EV + ":*", "versioned": EV + ":2.0.0"}


@pytest.fixture
async def remote():
    fake = FakeRegistry()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.base = f"http://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    yield fake
    await server.close()


async def _bpps(remote: FakeRegistry) -> dict[str, MockBpp]:
    """One BPP per domain form, known only to the remote registry (not to the CDS's registry file)."""
    bpps = {}
    for k, (name, domain) in enumerate(FORMS.items()):
        bpp = await MockBpp(f"{name}.bpp.test", catalogs=[catalog_for(f"{name}.bpp.test", shift=0.001 * k)]).start()
        remote.records.append({**bpp.participant.record(), "domain": domain})
        bpps[name] = bpp
    # another family's BPP: never a target (nothing listens at its URL)
    remote.records.append({**Participant("other.bpp.test", "BPP", "http://127.0.0.1:9/bpp").record(),
                           "domain": "nic2004:60212"})
    return bpps


async def _discover_through(network, cds, bpps: dict[str, MockBpp]) -> None:
    sent = discover_doc(network)
    body = orjson.dumps(sent)
    resp = await cds.request("GET", "/beckn/discover", data=body, headers=network.bap.sign(body))
    assert resp.status == 200
    got = reply_items(orjson.loads(await resp.read()))
    assert got == expected_items([b.catalogs[0] for b in bpps.values()])
    assert len(got) == 6                                   # two matching connectors from each BPP
    for b in bpps.values():                                # exactly one discover each
        assert len(b.received) == 1, b.subscriber_id
        assert orjson.loads(b.received[0][1])["context"]["message_id"] == sent["context"]["message_id"]


async def _close(cds, bpps) -> None:
    await cds.close()
    for b in bpps.values():
        await b.close()


async def test_exact_match_registry_bpps_under_every_domain_form_get_one_discover(network, remote):
    bpps = await _bpps(remote)
    cds = await start_cds(network, registry_url=remote.base, registry_type="lookup")
    try:
        await _discover_through(network, cds, bpps)
        asked = [c[1].get("domain") for c in remote.calls if c[0] == "lookup" and "subscriber_id" not in c[1]]
        assert None in asked                               # no domain filter: every form at once
    finally:
        await _close(cds, bpps)


async def test_exact_match_registry_that_needs_a_domain_is_asked_once_per_form(network, remote):
    remote.need_domain = True
    bpps = await _bpps(remote)
    cds = await start_cds(network, registry_url=remote.base, registry_type="lookup")
    try:
        await _discover_through(network, cds, bpps)        # the fixture's context.version is 2.0.0
    finally:
        await _close(cds, bpps)


async def test_dedi_registry_lists_its_members_for_fan_out(network, remote):
    bpps = await _bpps(remote)
    remote.members = [member({"subscriber_id": r["subscriber_id"], "key_id": r["key_id"]}) for r in remote.records]
    cds = await start_cds(network, registry_url=remote.base + "/dedi", registry_type="dedi",
                          registry_network_namespace="ubc.nbsl", registry_network_registry="members")
    try:
        await _discover_through(network, cds, bpps)
        assert [c for c in remote.calls if c[0] == "query"]
    finally:
        await _close(cds, bpps)
