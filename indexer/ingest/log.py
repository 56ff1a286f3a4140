"""Durable FIFO of accepted publish requests (docs/decisions.md §S "an ACKed publish is never lost", §21).

The HTTP layer appends the request and ACKs as soon as `append` returns: by then the entry is
written and fsynced (concurrent appends share one fsync). A consumer (`consume`) hands entries to
the ingest handler in order and acknowledges each once the handler returned, i.e. once the
catalog is searchable and `on_catalog_publish` went out. After a crash, every entry that was
appended but not acknowledged is delivered again: at-least-once, in order.

Files in the data directory: segments `ingest-<gen>.log` (CRC frames, see `indexer.embedded.persist`)
and a lock file. A segment holds a header frame (next sequence number), entry frames and ack
frames; memory holds the offsets of pending entries and their payloads only up to `cache_bytes`,
so a backlog costs little RAM. Every open starts a new segment, the active one rotates after
`segment_bytes`, and a leading segment is deleted once none of its entries is pending. An entry whose handler keeps failing is copied to
`ingest-dead.log` for the operator and acknowledged, so one poison request cannot stall ingestion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
from pathlib import Path
from typing import Awaitable, Callable

from indexer.embedded.persist import (
    DirLock, FrameLog, FrameScan, LogOp, frame, fsync_dir, list_generations, read_frame_at, write_all,
)

log = logging.getLogger(__name__)

_PREFIX, _SUFFIX = "ingest-", ".log"
_SEQ = struct.Struct("<Q")
_HEAD, _ENTRY, _ACK = b"H", b"E", b"A"
DEAD_LETTER = "ingest-dead.log"


class IngestLog:
    def __init__(self, data_dir: Path, *, fsync: bool = True, segment_bytes: int = 64 << 20,
                 cache_bytes: int = 64 << 20) -> None:
        self.dir = Path(data_dir)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._log = FrameLog(self.dir, _PREFIX, _SUFFIX, fsync=fsync, on_commit=self._on_commit)
        self._lock = DirLock(self.dir, "ingest.lock")
        self._next_seq = 1
        self._pending: dict[int, tuple[int, int]] = {}     # seq -> (segment gen, frame offset), in order
        self._seg_pending: dict[int, int] = {}              # segment gen -> pending entries in it
        self._segments: list[int] = []
        # Payloads of pending entries kept in memory up to `cache_bytes` (the rest is read from disk).
        self._cache: dict[int, bytes] = {}
        self._cache_bytes = 0
        self._cache_limit = cache_bytes
        self._rotating = False
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._new = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        async with self._open_lock:
            if self._opened:
                return
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
            try:
                await asyncio.to_thread(self._recover)
                gen = (self._segments[-1] + 1) if self._segments else 1
                await self._log.start(gen)
                self._segments.append(gen)
                await self._log.submit(_HEAD + _SEQ.pack(self._next_seq))
            except BaseException:
                self._lock.release()
                raise
            self._opened = True
            self._compact()
            if self._pending:
                self._new.set()

    def _recover(self) -> None:
        gens = list_generations(self.dir, _PREFIX, _SUFFIX)
        for i, (gen, path) in enumerate(gens):
            self._segments.append(gen)
            scan = FrameScan(path)
            for offset, payload in scan:
                if len(payload) < 1 + _SEQ.size:
                    log.error("%s: skipping malformed frame at offset %d", path, offset)
                    continue
                kind, seq = payload[:1], _SEQ.unpack_from(payload, 1)[0]
                if kind == _HEAD:
                    self._next_seq = max(self._next_seq, seq)
                elif kind == _ENTRY:
                    self._add_pending(seq, gen, offset)
                    self._next_seq = max(self._next_seq, seq + 1)
                elif kind == _ACK:
                    self._drop_pending(seq)
            if not scan.clean:
                # Only the file being written at a crash can end torn; it is never appended to again.
                (log.warning if i == len(gens) - 1 else log.error)(
                    "%s: ignoring damaged tail after offset %d", path, scan.end)

    async def close(self) -> None:
        if not self._opened:
            return
        await self._log.close()
        self._lock.release()
        self._opened = False

    # -- producer side ---------------------------------------------------------------------------

    async def append(self, entry: bytes) -> int:
        """Durably store one entry; returns its sequence number once it is on disk."""
        if not self._opened:
            await self.open()
        seq = self._next_seq
        self._next_seq += 1
        fut = self._log.submit(_ENTRY + _SEQ.pack(seq) + entry, token=(_ENTRY, seq, entry))
        if self._log.size > self.segment_bytes and not self._rotating:
            self._rotating = True
            # Queue order is file order: the header is the new segment's first frame. Nobody waits
            # for these two; a failure shows up in the appends that share their batch.
            rotation = self._log.rotate(token=(b"R", 0, b""))
            header = self._log.submit(_HEAD + _SEQ.pack(self._next_seq))
            for side in (rotation, header):
                side.add_done_callback(_retrieved)
        return await fut

    @property
    def pending_count(self) -> int:
        """Entries appended and not yet acknowledged (for backpressure and metrics)."""
        return len(self._pending)

    # -- consumer side ---------------------------------------------------------------------------

    async def pending(self) -> list[tuple[int, bytes]]:
        """Every unacknowledged entry, oldest first."""
        if not self._opened:
            await self.open()
        out = []
        for seq in list(self._pending):
            payload = await self._read(seq)
            if payload is not None:          # None: acknowledged while we were reading
                out.append((seq, payload))
        return out

    async def ack(self, seq: int) -> None:
        """Durably mark an entry done; unknown or already acknowledged sequence numbers are ignored."""
        if not self._opened:
            await self.open()
        if seq in self._pending:
            await self._log.submit(_ACK + _SEQ.pack(seq), token=(_ACK, seq, b""))

    async def consume(self, handler: Callable[[int, bytes], Awaitable[None]], *, stop: asyncio.Event,
                      max_attempts: int = 8, retry_delay: float = 0.2) -> None:
        """Deliver entries in order until `stop` is set, acknowledging each after `handler` returns.

        A failing handler is retried with exponential backoff (capped at 5 s); after `max_attempts`
        failures the entry goes to the dead-letter file and is acknowledged.
        """
        if not self._opened:
            await self.open()
        while not stop.is_set():
            if not self._pending:
                self._new.clear()
                await _wait_any(self._new, stop)
                continue
            seq = next(iter(self._pending))
            payload = await self._read(seq)
            if payload is None:
                continue
            for attempt in range(1, max_attempts + 1):
                try:
                    await handler(seq, payload)
                    break
                except Exception as e:  # noqa: BLE001 - the handler's failure must not kill the consumer
                    if attempt == max_attempts:
                        log.error("ingest entry %d failed %d times, moved to %s: %s",
                                  seq, attempt, DEAD_LETTER, e)
                        await asyncio.to_thread(self._dead_letter, seq, payload, repr(e))
                        break
                    log.warning("ingest entry %d failed (attempt %d): %s", seq, attempt, e)
                    if await _wait_any(stop, timeout=min(5.0, retry_delay * 2 ** (attempt - 1))):
                        return     # stopping: the entry stays pending and is delivered after restart
            await self.ack(seq)

    # -- internals -------------------------------------------------------------------------------

    async def _read(self, seq: int) -> bytes | None:
        where = self._pending.get(seq)
        if where is None:
            return None
        cached = self._cache.get(seq)
        if cached is not None:
            return cached
        gen, offset = where
        payload = await asyncio.to_thread(read_frame_at, self._log.path(gen), offset)
        return payload[1 + _SEQ.size:]

    def _on_commit(self, batch: list[LogOp]) -> None:
        for op in batch:
            if op.token is None:
                continue
            kind, seq, entry = op.token
            if kind == _ENTRY:
                self._add_pending(seq, op.gen, op.offset)
                if self._cache_bytes + len(entry) <= self._cache_limit:
                    self._cache[seq] = entry
                    self._cache_bytes += len(entry)
                op.result = seq
                self._new.set()
            elif kind == _ACK:
                self._drop_pending(seq)
            else:                                  # rotation: op.gen is the new segment
                if op.error is None:
                    self._segments.append(op.gen)
                self._rotating = False
        self._compact()

    def _add_pending(self, seq: int, gen: int, offset: int) -> None:
        self._pending[seq] = (gen, offset)
        self._seg_pending[gen] = self._seg_pending.get(gen, 0) + 1

    def _drop_pending(self, seq: int) -> None:
        where = self._pending.pop(seq, None)
        cached = self._cache.pop(seq, None)
        if cached is not None:
            self._cache_bytes -= len(cached)
        if where is not None:
            left = self._seg_pending[where[0]] - 1
            if left:
                self._seg_pending[where[0]] = left
            else:
                del self._seg_pending[where[0]]

    def _compact(self) -> None:
        # Only a leading run of fully acknowledged segments may go: acks always follow their entries,
        # so a later segment's acks never refer to entries that are still pending in a deleted one.
        while len(self._segments) > 1 and self._segments[0] not in self._seg_pending:
            gen = self._segments.pop(0)
            with contextlib.suppress(FileNotFoundError):
                self._log.path(gen).unlink()

    def _dead_letter(self, seq: int, payload: bytes, error: str) -> None:
        record = _SEQ.pack(seq) + struct.pack("<d", time.time()) + error.encode()[:1000] + b"\0" + payload
        path = self.dir / DEAD_LETTER
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            write_all(fd, frame(record))
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if self.fsync:
            fsync_dir(self.dir)


def _retrieved(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


async def _wait_any(*events: asyncio.Event, timeout: float | None = None) -> bool:
    """Wait until one of `events` is set (or the timeout passes); True if the first event is set."""
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
    return events[0].is_set()
