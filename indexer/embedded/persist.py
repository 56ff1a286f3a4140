"""Durable files for the embedded backend and the ingest log: CRC-framed append-only logs with
group commit, atomic snapshot files and a data-directory lock.

Frame: ``<u32 length><u32 crc32(payload)><payload>`` (little endian). A reader stops at the first
frame that is short or fails its CRC: that is a torn tail from a crash mid-write, and nothing
after it was ever acknowledged (an append returns only after its whole batch is written and
fsynced). Writers never append after a torn tail: every open starts a new generation file.

`FrameLog` is the shared writer. Appends are queued synchronously (so queue order is log order)
and one background task writes everything queued so far with one write and one fsync, off the
event loop; every caller waiting in that batch shares the fsync (group commit). The `on_commit`
callback then runs on the event loop, in log order, before any caller resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
MAX_FRAME = 1 << 30          # a length field above this is garbage, not a frame


class StorageCorrupt(RuntimeError):
    """A persisted file that must be complete (a renamed snapshot) does not read back."""


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


class FrameScan:
    """Iterate the intact frames of a file as (offset, payload); afterwards `clean` says whether the
    file ended exactly at a frame boundary (False = torn or damaged tail, everything after ignored)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clean = True
        self.end = 0                          # offset just past the last intact frame

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        with open(self.path, "rb", buffering=1 << 20) as f:
            pos = 0
            while True:
                head = f.read(_HEADER.size)
                if not head:
                    break
                if len(head) < _HEADER.size:
                    self.clean = False
                    break
                length, crc = _HEADER.unpack(head)
                payload = f.read(length) if length <= MAX_FRAME else b""
                if length > MAX_FRAME or len(payload) != length or zlib.crc32(payload) != crc:
                    self.clean = False
                    break
                yield pos, payload
                pos += _HEADER.size + length
                self.end = pos


def read_frame_at(path: Path, offset: int) -> bytes:
    """One frame's payload at a known offset (checked again, so a damaged file never yields garbage)."""
    with open(path, "rb") as f:
        f.seek(offset)
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise StorageCorrupt(f"{path}: no frame at offset {offset}")
        length, crc = _HEADER.unpack(head)
        payload = f.read(length)
    if len(payload) != length or zlib.crc32(payload) != crc:
        raise StorageCorrupt(f"{path}: damaged frame at offset {offset}")
    return payload


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_atomic(path: Path, chunks: Iterator[bytes], *, fsync: bool = True) -> int:
    """Write `chunks` to `path` via tmp file + fsync + rename + directory fsync; returns bytes written."""
    tmp = path.with_name(path.name + ".tmp")
    size = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        buf: list[bytes] = []
        pending = 0
        for chunk in chunks:
            buf.append(chunk)
            pending += len(chunk)
            if pending >= 1 << 20:          # bounded buffering: snapshots can be gigabytes
                write_all(fd, b"".join(buf))
                size += pending
                buf, pending = [], 0
        write_all(fd, b"".join(buf))
        size += pending
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)
    return size


def without_gc(fn: Callable[[], Any]) -> Any:
    """Run a bulk load with the cyclic GC paused: millions of new long-lived objects would otherwise
    trigger repeated full collections (about half the replay time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        return fn()
    finally:
        if was:
            gc.enable()


class DirLocked(RuntimeError):
    """Another process holds the data directory (a second `cds serve` on the same CDS_DATA_DIR)."""


class DirLock:
    """An exclusive flock on `<dir>/<name>`: two processes writing one data directory would corrupt it."""

    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / name
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise DirLocked(f"{self.path} is locked by another process (one writer per data directory)") from e
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def list_generations(directory: Path, prefix: str, suffix: str) -> list[tuple[int, Path]]:
    rx = re.compile(re.escape(prefix) + r"(\d{12})" + re.escape(suffix) + "$")
    found = []
    for p in directory.iterdir():
        m = rx.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def gen_path(directory: Path, prefix: str, suffix: str, gen: int) -> Path:
    return directory / f"{prefix}{gen:012d}{suffix}"


@dataclass(eq=False)
class LogOp:
    """One queued append (payload) or generation switch (rotate)."""

    payload: bytes = b""
    rotate: bool = False
    token: Any = None                     # caller's data, handed back to on_commit
    future: asyncio.Future | None = None
    gen: int = 0                          # filled in by the writer: where the frame landed
    offset: int = 0
    result: Any = field(default=None)    # set by on_commit; becomes the future's result ...
    error: BaseException | None = None    # ... or this, the caller's exception


class FrameLog:
    """Append-only generation files `<prefix><gen><suffix>` in `directory`, written with group commit."""

    def __init__(self, directory: Path, prefix: str, suffix: str, *, fsync: bool = True,
                 on_commit: Callable[[list[LogOp]], None] | None = None) -> None:
        self.directory = directory
        self.prefix, self.suffix = prefix, suffix
        self.fsync = fsync
        self.on_commit = on_commit
        self.gen = 0
        self.size = 0                        # bytes in the current generation
        # Set when a failed write could not be cut off the file: appending more could bury a torn
        # frame in the middle of the log, so every later write is refused until a restart.
        self.failed: BaseException | None = None
        self._fd: int | None = None
        self._queue: list[LogOp] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._idle: asyncio.Event | None = None

    def path(self, gen: int) -> Path:
        return gen_path(self.directory, self.prefix, self.suffix, gen)

    async def start(self, gen: int) -> None:
        """Open a fresh generation `gen` (never appending to an older file, whose tail may be torn)."""
        await asyncio.to_thread(self._open_gen, gen)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task = asyncio.create_task(self._run(), name=f"framelog-{self.prefix}")

    def _open_gen(self, gen: int) -> None:
        fd = os.open(self.path(gen), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if self.fsync:
            fsync_dir(self.directory)        # the new file's directory entry must survive a crash too
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self.gen, self.size = fd, gen, os.fstat(fd).st_size

    def submit(self, payload: bytes, token: Any = None) -> asyncio.Future:
        """Queue one frame; the future resolves (to `op.result`) once it is durable and committed."""
        return self._enqueue(LogOp(payload=payload, token=token))

    def rotate(self, token: Any = None) -> asyncio.Future:
        """Queue a switch to generation gen+1: frames queued before it land in the old file."""
        return self._enqueue(LogOp(rotate=True, token=token))

    @property
    def running(self) -> bool:
        """False once the writer task has ended (e.g. cancelled by asyncio.run at interpreter shutdown)."""
        return self._task is not None and not self._task.done()

    def _enqueue(self, op: LogOp) -> asyncio.Future:
        if self.failed is not None:
            raise OSError(f"log {self.prefix!r} is unusable after a write error: {self.failed}")
        if not self.running:
            raise RuntimeError(f"log {self.prefix!r} is not running")
        op.future = asyncio.get_running_loop().create_future()
        self._queue.append(op)
        assert self._wake is not None and self._idle is not None
        self._idle.clear()
        self._wake.set()
        return op.future

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        while True:
            if not self._queue:
                self._idle.set()
                await self._wake.wait()
                self._wake.clear()
                continue
            # Everything queued so far, up to and including the first rotation, is one group.
            cut = next((i + 1 for i, op in enumerate(self._queue) if op.rotate), len(self._queue))
            batch, self._queue = self._queue[:cut], self._queue[cut:]
            try:
                await asyncio.to_thread(self._write_batch, batch)
            except asyncio.CancelledError:
                # Shutdown mid-write: the thread still finishes; callers learn nothing was confirmed.
                for op in batch:
                    _fail(op, OSError("log closed during write"))
                raise
            except BaseException as e:  # noqa: BLE001 - a failed write fails every caller in the batch
                log.error("write to %s failed: %s", self.path(self.gen), e)
                for op in batch:
                    _fail(op, e)
                if self.failed is not None:
                    for op in self._queue:
                        _fail(op, e)
                    self._queue = []
                continue
            if self.on_commit is not None:
                try:
                    self.on_commit(batch)
                except BaseException as e:  # noqa: BLE001 - the callers must hear about it, not hang
                    log.exception("commit callback failed")
                    for op in batch:
                        _fail(op, e)
                    continue
            for op in batch:
                if op.future is not None and not op.future.done():
                    if op.error is not None:
                        op.future.set_exception(op.error)
                    else:
                        op.future.set_result(op.result)

    def _write_batch(self, batch: list[LogOp]) -> None:
        assert self._fd is not None
        parts: list[bytes] = []
        pos = self.size
        for op in batch:
            if op.rotate:
                continue
            f = frame(op.payload)
            op.gen, op.offset = self.gen, pos
            parts.append(f)
            pos += len(f)
        if parts:
            start = self.size
            try:
                write_all(self._fd, b"".join(parts))
                if self.fsync:
                    os.fsync(self._fd)
            except BaseException as e:
                # Cut the half-written batch off so the file stays a clean prefix of confirmed frames.
                try:
                    os.ftruncate(self._fd, start)
                    os.lseek(self._fd, 0, os.SEEK_END)
                except OSError:
                    self.failed = e
                raise
            self.size = pos
        if batch[-1].rotate:
            try:
                self._open_gen(self.gen + 1)
                batch[-1].gen = self.gen
            except OSError as e:      # the frames above are durable: only the switch failed
                log.error("cannot start %s: %s", self.path(self.gen + 1), e)
                batch[-1].error = e

    async def drain(self) -> None:
        """Wait until everything queued so far is written and committed."""
        if self._idle is not None:
            await self._idle.wait()

    async def close(self) -> None:
        if self._task is not None:
            if not self._task.done() and self.failed is None:
                await self.drain()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _fail(op: LogOp, e: BaseException) -> None:
    if op.future is not None and not op.future.done():
        op.future.set_exception(e)
