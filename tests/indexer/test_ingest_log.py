"""IngestLog: durable FIFO of accepted publishes (append -> pending -> ack), restarts, compaction,
the consumer helper, and a real SIGKILL of a writing process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from indexer.embedded.persist import FrameScan, list_generations
from indexer.ingest.log import DEAD_LETTER, IngestLog
from tests.crash_child import crash_payload, spawn_and_kill


def _segments(d: Path) -> list[int]:
    return [g for g, _ in list_generations(d, "ingest-", ".log")]


async def test_append_pending_ack_in_order(tmp_path):
    log = IngestLog(tmp_path, fsync=False)
    seqs = [await log.append(f"e{i}".encode()) for i in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert await log.pending() == [(s, f"e{i}".encode()) for i, s in enumerate(seqs)]
    await log.ack(seqs[1])
    await log.ack(seqs[3])
    await log.ack(12345)                      # unknown: ignored
    assert [s for s, _ in await log.pending()] == [seqs[0], seqs[2], seqs[4]]
    assert log.pending_count == 3
    await log.close()


async def test_restart_returns_unacked_and_never_reuses_seq(tmp_path):
    log = IngestLog(tmp_path, fsync=True)
    seqs = [await log.append(b"x" * i) for i in range(1, 7)]
    for s in seqs[::2]:
        await log.ack(s)
    await log.close()

    log = IngestLog(tmp_path)
    await log.open()
    assert await log.pending() == [(s, b"x" * (i + 1)) for i, s in enumerate(seqs) if i % 2]
    for s, _ in await log.pending():
        await log.ack(s)
    await log.close()

    log = IngestLog(tmp_path)
    assert await log.pending() == []
    new = await log.append(b"later")
    assert new > max(seqs)                     # seq survives even when every old entry was acked
    await log.close()


async def test_concurrent_appends_share_the_log_and_all_survive(tmp_path):
    log = IngestLog(tmp_path, fsync=True)
    seqs = await asyncio.gather(*(log.append(f"p{i}".encode()) for i in range(50)))
    await log.close()
    log = IngestLog(tmp_path)
    pending = await log.pending()
    assert sorted(seqs) == [s for s, _ in pending]
    assert {p for _, p in pending} == {f"p{i}".encode() for i in range(50)}
    assert dict(pending)[seqs[7]] == b"p7"
    await log.close()


async def test_fully_acked_segments_are_deleted(tmp_path):
    log = IngestLog(tmp_path, fsync=False, segment_bytes=300)
    seqs = [await log.append(bytes(100)) for _ in range(20)]
    assert len(_segments(tmp_path)) > 3
    for s in seqs[:-1]:
        await log.ack(s)
    # Only the segment holding the last (pending) entry and later ones remain.
    assert len(_segments(tmp_path)) <= 2
    await log.close()
    log = IngestLog(tmp_path)
    assert [s for s, _ in await log.pending()] == [seqs[-1]]
    await log.ack(seqs[-1])
    assert len(_segments(tmp_path)) == 1
    await log.close()


async def test_pending_entry_keeps_its_segment_and_later_ones(tmp_path):
    log = IngestLog(tmp_path, fsync=False, segment_bytes=300)
    seqs = [await log.append(bytes(100)) for _ in range(12)]
    for s in seqs[1:]:
        await log.ack(s)
    # The first entry is pending: no segment may go (later ones hold acks we still need after a restart).
    await log.close()
    log = IngestLog(tmp_path)
    assert [s for s, _ in await log.pending()] == [seqs[0]]
    await log.close()


async def test_torn_tail_is_ignored(tmp_path):
    log = IngestLog(tmp_path, fsync=False)
    seqs = [await log.append(f"entry-{i}".encode() * 10) for i in range(4)]
    await log.close()
    last = list_generations(tmp_path, "ingest-", ".log")[-1][1]
    with open(last, "r+b") as f:
        f.truncate(os.path.getsize(last) - 5)      # crash in the middle of the last frame
    log = IngestLog(tmp_path)
    assert [s for s, _ in await log.pending()] == seqs[:3]
    s5 = await log.append(b"after")
    await log.close()
    log = IngestLog(tmp_path)
    assert [s for s, _ in await log.pending()] == seqs[:3] + [s5]
    await log.close()


async def test_payload_read_from_disk_when_not_cached(tmp_path):
    log = IngestLog(tmp_path, fsync=False, cache_bytes=0)
    big = os.urandom(200_000)
    seq = await log.append(big)
    assert await log.pending() == [(seq, big)]
    await log.close()


async def test_consume_delivers_in_order_and_acks(tmp_path):
    log = IngestLog(tmp_path, fsync=False)
    for i in range(3):
        await log.append(f"a{i}".encode())
    stop = asyncio.Event()
    seen: list[bytes] = []

    async def handler(seq: int, payload: bytes) -> None:
        seen.append(payload)
        if len(seen) == 5:
            stop.set()

    task = asyncio.create_task(log.consume(handler, stop=stop))
    await asyncio.sleep(0.05)
    for i in range(3, 5):                       # appended while the consumer waits
        await log.append(f"a{i}".encode())
    await asyncio.wait_for(task, 5)
    assert seen == [f"a{i}".encode() for i in range(5)]
    assert await log.pending() == []
    await log.close()


async def test_consume_stops_with_the_entry_still_pending(tmp_path):
    log = IngestLog(tmp_path, fsync=False)
    seq = await log.append(b"slow")
    stop = asyncio.Event()

    async def failing(seq: int, payload: bytes) -> None:
        stop.set()
        raise RuntimeError("store down")

    await asyncio.wait_for(log.consume(failing, stop=stop, retry_delay=0.01), 5)
    assert [s for s, _ in await log.pending()] == [seq]
    await log.close()


async def test_poison_entry_goes_to_dead_letter(tmp_path):
    log = IngestLog(tmp_path, fsync=False)
    bad = await log.append(b"poison")
    await log.append(b"good")
    stop = asyncio.Event()
    ok: list[bytes] = []
    calls = 0

    async def handler(seq: int, payload: bytes) -> None:
        nonlocal calls
        if payload == b"poison":
            calls += 1
            raise ValueError("cannot handle")
        ok.append(payload)
        stop.set()

    await asyncio.wait_for(log.consume(handler, stop=stop, max_attempts=3, retry_delay=0.001), 5)
    assert calls == 3 and ok == [b"good"]
    assert await log.pending() == []
    dead = [p for _, p in FrameScan(tmp_path / DEAD_LETTER)]
    assert len(dead) == 1 and dead[0].endswith(b"\0poison") and b"cannot handle" in dead[0]
    await log.close()


async def test_second_process_cannot_open_the_same_log(tmp_path):
    log = IngestLog(tmp_path, fsync=False)
    await log.open()
    with pytest.raises(RuntimeError, match="locked"):
        await IngestLog(tmp_path).open()
    await log.close()


@pytest.mark.slow
async def test_sigkill_loses_no_appended_entry(tmp_path):
    lines = await asyncio.to_thread(
        spawn_and_kill, "ingest", tmp_path,
        lambda ls: sum(x.startswith("APPENDED") for x in ls) >= 150)
    appended = {int(x.split()[1]): x.split()[2] for x in lines if x.startswith("APPENDED")}
    acked = {int(x.split()[1]) for x in lines if x.startswith("ACKED")}
    assert len(appended) >= 150 and acked

    log = IngestLog(tmp_path)
    pending = await log.pending()
    seqs = [s for s, _ in pending]
    assert seqs == sorted(seqs)
    got = dict(pending)
    for seq, name in appended.items():
        if seq in acked:
            assert seq not in got, f"acked entry {seq} came back"
        else:
            w, n = name[1:].split("-")
            assert got.get(seq) == crash_payload(int(w), int(n)), f"appended entry {seq} lost or damaged"
    for seq, payload in pending:               # anything else pending was appended just before the kill
        if seq not in appended:
            head = payload.split(b":", 1)[0].decode()
            w, n = head[1:].split("-")
            assert payload == crash_payload(int(w), int(n))
    await log.close()
