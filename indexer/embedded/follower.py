"""A read-only copy of the embedded index for a serving worker of `cds serve --workers N`
(docs/decisions.md §P): it loads the writer's newest snapshot, replays its write-ahead log, then follows
the log as the writer (the ingest process) appends to it.

- Nothing here writes the index files or takes the data-directory lock; writes raise.
- A record is decoded and its index entries prepared in a thread (they touch nothing a search reads),
  a big catalog's items one chunk per call (`indexer.embedded.chunked`: no C call holds the GIL for long),
  then swapped in on the event loop in steps of `slice_items` documents, yielding once a turn has run
  `SWAP_TURN_S` (`Index.put_steps`): a 50,000-item catalog never holds the serving loop for long (§24), and
  a search between two turns still sees the whole old catalog (the swap is one step).
- After each record the applied log position is reported (`positions.FollowerPositions`); the writer
  returns from a write, and so sends `on_catalog_publish`, once every worker applied it.
- Log files the writer removed after a snapshot while this follower was behind: it reloads from the
  newest snapshot (in a thread) and swaps the whole index in at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Union

import msgspec

from cds.core.documents import CatalogMeta, CatalogRecord, ItemDoc
from indexer.embedded.chunked import PutChunks
from indexer.embedded.index import Index
from indexer.embedded.persist import MAX_FRAME, StorageCorrupt, gen_path, list_generations, without_gc
from indexer.embedded.positions import RUNG_POLL_S, FollowerPositions, Position, follower_bell
from indexer.embedded.store import (
    _SNAP, _SUFFIX_SNAP, _SUFFIX_WAL, _WAL, EmbeddedStorage, _Delete, _Purge, _Put, _decoder, _order_key,
    _SnapEnd, _SnapHead, apply_op, apply_purge, load_snapshot, prepare_put,
)
from indexer.storage import PurgeStats

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
_THREAD_BYTES = 64 << 10        # read, decode and prepare records larger than this in a thread
_READ_BYTES = 16 << 20          # log bytes read per step (a single larger frame is read whole)
_DECODE_CHUNK = 256             # items decoded per call: the thread lets go of the GIL in between
SWAP_TURN_S = 0.004             # a swap yields the loop once a turn has run this long (§24: far below 50 ms)


class _LazyRecord(msgspec.Struct, kw_only=True):
    """A put record's catalog with its items left encoded: one msgspec call decoding 50,000 items would
    hold the GIL (and so every serving request) for most of a second."""
    meta: CatalogMeta
    items: list[msgspec.Raw] = []


class _LazyPut(msgspec.Struct, tag="put", array_like=True):
    record: _LazyRecord
    raw_z: bytes = b""


_lazy_decoder = msgspec.msgpack.Decoder(Union[_LazyPut, PutChunks, _Delete, _Purge, _SnapHead, _SnapEnd])
_item_decoder = msgspec.msgpack.Decoder(ItemDoc)


class ReadOnly(RuntimeError):
    pass


class FollowerStorage(EmbeddedStorage):
    """EmbeddedStorage's reads over an index fed by another process's write-ahead log."""

    def __init__(self, data_dir: Path, *, poll_s: float = 0.005, slice_items: int = 128,
                 grid_deg: float = 0.05) -> None:
        super().__init__(data_dir, fsync=False, grid_deg=grid_deg)
        self._grid_deg = grid_deg
        self.poll_s = poll_s
        self.slice_items = slice_items
        self.positions = FollowerPositions(self.dir)
        self.pos: Position = (0, 0)
        self._file: BinaryIO | None = None
        self._file_gen = -1
        self._task: asyncio.Task | None = None
        self._wait_s = poll_s
        self.applied = asyncio.Event()      # set after every applied step (tests wait on it)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._opened:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.positions.report((0, 0))       # from now on the writer waits for this worker too
        self._index, self.pos = await asyncio.to_thread(without_gc, self._load)
        self.positions.report(self.pos)
        self._opened = True
        # Rung by the writer after each write (positions.Doorbell); polling then only covers a lost ring.
        self._wait_s = (max(self.poll_s, RUNG_POLL_S) if self.positions.bell.open(follower_bell(os.getpid()))
                        else self.poll_s)
        self._task = asyncio.create_task(self._follow(), name="index-follower")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._close_file()
        self.positions.remove()
        self.positions.close()
        self._opened = False

    async def ready(self) -> bool:
        return self._opened and self._task is not None and not self._task.done()

    # -- writes belong to the writer -----------------------------------------------------------------

    async def replace_catalog(self, record: Any) -> None:
        raise ReadOnly("a serving worker's index is read-only: publishes go through the ingest process")

    async def delete_catalog(self, bpp_id: str, catalog_id: str) -> bool:
        raise ReadOnly("a serving worker's index is read-only")

    async def purge_expired(self, now: float) -> PurgeStats:
        return PurgeStats()             # the writer purges; its purge records reach us through the log

    # -- loading ------------------------------------------------------------------------------------

    def _load(self) -> tuple[Index, Position]:
        """A fresh index from the newest snapshot plus the logs after it, and the position reached."""
        for _ in range(10):
            try:
                return self._load_once()
            except FileNotFoundError:
                continue                 # the writer finished a snapshot and removed files under us: again
        raise StorageCorrupt(f"{self.dir}: the index files keep changing while loading")

    def _load_once(self) -> tuple[Index, Position]:
        idx = Index(_order_key, grid_deg=self._grid_deg)
        base = 0
        snaps = list_generations(self.dir, _SNAP, _SUFFIX_SNAP)
        if snaps:
            base, path = snaps[-1]
            load_snapshot(idx, path)
        pos = (base, 0)
        for gen, path in list_generations(self.dir, _WAL, _SUFFIX_WAL):
            if gen < base:
                continue
            with open(path, "rb") as f:
                end = 0
                for payload, end in _frames(f, 0, 1 << 62):
                    _apply_logged(idx, payload)
            pos = (gen, end)
        return idx, pos

    # -- following ------------------------------------------------------------------------------------

    async def _follow(self) -> None:
        bell = self.positions.bell
        while True:
            bell.clear()                # (a ring from now on wakes the wait below)
            try:
                moved = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep following; a reload repairs what a bad step left
                log.exception("following the index log failed; reloading")
                await self._reload()
                moved = True
            if moved:
                self.positions.report(self.pos)
                self.applied.set()
                self.applied.clear()
                await asyncio.sleep(0)
            else:
                await bell.wait(self._wait_s)

    async def _step(self) -> bool:
        gen, off = self.pos
        if self._file_gen != gen:
            self._close_file()
            try:
                self._file = open(gen_path(self.dir, _WAL, _SUFFIX_WAL, gen), "rb")
                self._file_gen = gen
            except FileNotFoundError:
                return await self._gap(gen)
        assert self._file is not None
        waiting = os.fstat(self._file.fileno()).st_size - off
        if waiting <= 0:
            frames = []
        elif waiting > _THREAD_BYTES:        # reading and checking a big frame is no job for the loop
            frames = await asyncio.get_running_loop().run_in_executor(
                _APPLY_POOL, lambda: list(_frames(self._file, off, _READ_BYTES)))
        else:
            frames = list(_frames(self._file, off, _READ_BYTES))
        if not frames:
            nxt = self._next_gen(gen)
            if nxt is None:
                return False
            # The writer only starts a new file after finishing this one: read what is left, once more.
            frames = list(_frames(self._file, off, 1 << 62))
            if not frames:
                size = os.fstat(self._file.fileno()).st_size
                if size > off:
                    log.warning("%s: ignoring damaged tail after offset %d", self._file.name, off)
                self.pos = (nxt, 0)
                return True
        for payload, end in frames:
            await self._apply_async(payload)
            self.pos = (gen, end)
        return True

    async def _apply_async(self, payload: bytes) -> None:
        big = len(payload) > _THREAD_BYTES
        if not big:
            await self._swap_in(*self._decode_prepare(payload))
            return
        # Hundreds of thousands of new objects: a collection meanwhile would walk them (and the whole
        # index) while holding the GIL. They are long-lived: freeze them out of collections instead.
        was = gc.isenabled()
        gc.disable()
        try:
            prepared = await asyncio.get_running_loop().run_in_executor(_APPLY_POOL, self._decode_prepare, payload)
            await self._swap_in(*prepared)
        finally:
            gc.freeze()
            if was:
                gc.enable()

    async def _swap_in(self, op: Any, prepared: Any) -> None:
        idx = self._index
        if isinstance(op, _Put):
            key = op.record.meta.key
            steps: Iterator[None] = idx.put_steps(prepared, self.slice_items)
        elif isinstance(op, _Delete):
            key = (op.bpp_id, op.catalog_id)
            steps = idx.delete_steps(key, self.slice_items)
        elif isinstance(op, _Purge):
            apply_purge(idx, (op.bpp_id, op.catalog_id), op.now)
            self._version += 1
            return
        else:
            raise StorageCorrupt(f"unexpected log record {type(op).__name__}")
        # A search paused across a step that grew the arrays, flipped the catalog or unlinked documents starts
        # over (store.py `search`); steps linking the new, not yet alive, documents change nothing it reads.
        before = idx.catalogs.get(key)
        until = time.perf_counter() + SWAP_TURN_S
        for n, _ in enumerate(steps):
            if n == 0 or idx.catalogs.get(key) is not before:
                self._version += 1
            if time.perf_counter() >= until:
                await asyncio.sleep(0)      # let requests run between turns
                until = time.perf_counter() + SWAP_TURN_S
        self._version += 1

    def _decode_prepare(self, payload: bytes) -> tuple[Any, Any]:
        lazy = _lazy_decoder.decode(payload)
        if isinstance(lazy, PutChunks):           # one chunk per decode call (chunked.py)
            record = lazy.record()
        elif isinstance(lazy, _LazyPut):        # a plain put: a small catalog, or a log written before chunks
            raws = lazy.record.items
            items: list[ItemDoc] = []
            for start in range(0, len(raws), _DECODE_CHUNK):
                items.extend(_item_decoder.decode(r) for r in raws[start:start + _DECODE_CHUNK])
            record = CatalogRecord(meta=lazy.record.meta, items=items)
        else:
            return lazy, None
        op = _Put(record=record, raw_z=lazy.raw_z)
        return op, prepare_put(self._index, op)

    async def _gap(self, gen: int) -> bool:
        """The log file we need is not there: skip empty files the writer removed, or reload when a
        snapshot has replaced records we have not applied."""
        if any(g > gen for g, _ in list_generations(self.dir, _SNAP, _SUFFIX_SNAP)):
            log.warning("index log generation %d was folded into a snapshot before this worker read it: reloading",
                        gen)
            await self._reload()
            return True
        nxt = self._next_gen(gen)
        if nxt is None:
            return False
        self.pos = (nxt, 0)
        return True

    async def _reload(self) -> None:
        self._close_file()
        tmp = FollowerStorage(self.dir, grid_deg=self._grid_deg)
        self._index, self.pos = await asyncio.to_thread(without_gc, tmp._load)
        self._version += 1

    def _next_gen(self, gen: int) -> int | None:
        later = [g for g, _ in list_generations(self.dir, _WAL, _SUFFIX_WAL) if g > gen]
        return min(later) if later else None

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._file_gen = None, -1


BACKGROUND_NICE = 10


def _lower_priority() -> None:
    """The apply thread runs at a lower CPU priority: the serving loop's thread comes first (Linux schedules
    threads one by one; elsewhere, or when refused, it runs at the process's priority)."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), BACKGROUND_NICE))


# One thread per process reads, decodes and prepares big records (they are applied in log order anyway).
_APPLY_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-apply", initializer=_lower_priority)


def _apply_logged(idx: Index, payload: bytes) -> None:
    try:
        apply_op(idx, _decoder.decode(payload))
    except Exception:  # noqa: BLE001 - as the writer's replay does: one unusable record is skipped
        log.exception("skipping an unusable index log record")


def _frames(f: BinaryIO, offset: int, max_bytes: int) -> Iterator[tuple[bytes, int]]:
    """Complete, CRC-checked frames from `offset` on, as (payload, end offset), up to about `max_bytes`.
    Stops at a frame that is not fully written yet (or is torn: the caller decides which)."""
    f.seek(offset)
    read = 0
    while read < max_bytes:
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return
        length, crc = _HEADER.unpack(head)
        if length > MAX_FRAME:
            return
        payload = f.read(length)
        if len(payload) != length or zlib.crc32(payload) != crc:
            return
        offset += _HEADER.size + length
        read += _HEADER.size + length
        yield payload, offset
