"""Spooled publishes (docs/decisions.md §P): a body past CDS_SPOOL_BYTES goes to a file in the data directory
as it arrives; the checks before the ACK read its skeleton (parsed by a child process) and its digest; the
queue entry names the file; the file is removed once the publish was reported, and at once when it is
refused or a replay."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from cds.api.app import create_app
from indexer.ingest.entry import IngestEntry, decode_entry, encode_entry
from tests.api.test_api_protocol import assert_nack, publish_body
from tests.harness import start_client


def _spool_files(network) -> list:
    spool = network.tmp / "data" / "spool"
    return sorted(spool.iterdir()) if spool.exists() else []


@pytest.fixture
async def spooling(network):
    """A CDS that spools every publish body over 256 bytes."""
    cds = await start_client(create_app(network.settings(spool_bytes=256)))
    yield cds
    await cds.close()


async def test_a_spooled_publish_is_indexed_reported_and_its_file_removed(network, spooling):
    body = publish_body(network)
    assert len(body) > 256
    resp = await spooling.post("/beckn/catalog/publish", data=body, headers=network.bpp.sign(body))
    assert resp.status == 200, await resp.read()
    (path, _h, cb), = await network.bpp_sink.wait_for(1)
    results = orjson.loads(cb)["message"]["results"]
    assert results and all(r["status"] == "ACCEPTED" for r in results), results
    for _ in range(100):
        if not _spool_files(network):
            break
        await asyncio.sleep(0.02)
    assert _spool_files(network) == []
    assert (network.tmp / "data" / "spool").is_dir()       # it went through the spool


async def test_a_refused_spooled_publish_leaves_no_file_and_keeps_its_nack(network, spooling):
    body = publish_body(network)
    headers = network.bpp.sign(body)
    resp = await spooling.post("/beckn/catalog/publish", data=body.replace(b"CCS2", b"CCS1"), headers=headers)
    assert_nack(resp.status, await resp.read(), 401, "AUT_SIGNATURE_INVALID")
    resp = await spooling.post("/beckn/catalog/publish", data=body[:-5], headers=network.bpp.sign(body[:-5]))
    assert resp.status == 400, await resp.read()          # not JSON: the child's error, as parse_json gives it
    other = publish_body(network, publisher=network.bap)  # a BAP may not publish
    resp = await spooling.post("/beckn/catalog/publish", data=other, headers=network.bap.sign(other))
    assert_nack(resp.status, await resp.read(), 401, "AUT_UNAUTHORIZED_ACTION")
    assert _spool_files(network) == []


async def test_a_spooled_replay_is_acked_once_and_leaves_no_file(network, spooling):
    body = publish_body(network)
    headers = network.bpp.sign(body)
    for _ in range(2):
        resp = await spooling.post("/beckn/catalog/publish", data=body, headers=headers)
        assert resp.status == 200
    await network.bpp_sink.wait_for(1)
    await asyncio.sleep(0.3)
    assert len(network.bpp_sink.received) == 1          # indexed and reported once
    assert _spool_files(network) == []


async def test_a_small_body_is_not_spooled(network):
    cds = await start_client(create_app(network.settings()))    # default threshold: megabytes
    try:
        body = publish_body(network)
        spool = network.tmp / "data" / "spool"
        resp = await cds.post("/beckn/catalog/publish", data=body, headers=network.bpp.sign(body))
        assert resp.status == 200
        await network.bpp_sink.wait_for(1)
        assert not spool.exists() or not any(spool.iterdir())
    finally:
        await cds.close()


def test_an_entry_reads_its_body_back_from_the_spool_file_and_fails_clearly_without_it(tmp_path):
    f = tmp_path / "publish-1.json"
    f.write_bytes(b'{"context": {}}')
    data = encode_entry(IngestEntry(publisher_id="p", body=b"", received_at=1.0, spool=str(f)))
    assert decode_entry(data).body == b'{"context": {}}'
    f.unlink()
    try:
        decode_entry(data)
    except FileNotFoundError as e:
        assert str(f) in str(e)
    else:
        raise AssertionError("a missing spool file must fail the decode (the entry is dead-lettered)")
