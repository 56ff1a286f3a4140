"""Where each serving worker's copy of the embedded index stands in the write-ahead log
(docs/decisions.md §P: one writer, followers that replay its log).

Every follower keeps one small file `<index dir>/followers/<pid>` holding `<generation> <offset>`: the
log position it has applied (and so made searchable) so far. The writer reads them to know when a write
is searchable through every worker, which is when `on_catalog_publish` may go out (§21). Files of
processes that are gone are ignored and removed, so a dead worker never holds ingest up; a worker that
is still loading reports position 0 0 from its first moment, so a publish indexed meanwhile waits for it.
Per machine by construction (a local directory), like the index itself.

Wake-ups (`Doorbell`): the writer rings every lagging follower once a write is durable, and a follower rings the
writer after each report, so neither waits out a polling interval (docs/decisions.md §P). A ring is only a hint:
the files stay the truth, and both sides still poll, less often, in case one is lost or sockets are unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)

Position = tuple[int, int]          # (log generation, byte offset just past the last applied frame)


WRITER = "writer"
RUNG_POLL_S = 0.05          # with doorbells, the polling that only covers a lost ring


class Doorbell:
    """Wake-ups between the processes of one index directory: Linux abstract Unix datagram sockets, named after
    the directory (nothing to clean up, no path length limit). `open` listens under `name` on the running loop
    (False when that cannot be done: another listener of that name, or no abstract sockets); `ring` is
    fire-and-forget (nobody listening, or a full queue: dropped)."""

    def __init__(self, index_dir: Path) -> None:
        key = hashlib.blake2b(str(Path(index_dir).resolve()).encode(), digest_size=8).hexdigest()
        self._prefix = f"\0cds-index-{key}-"
        self._out: socket.socket | None = None
        self._in: socket.socket | None = None
        self._rung: asyncio.Event | None = None

    def open(self, name: str) -> bool:
        if self._in is not None:
            return True
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind(self._prefix + name)
            self._rung = asyncio.Event()
            asyncio.get_running_loop().add_reader(sock.fileno(), self._drain)
        except (OSError, NotImplementedError):
            sock.close()
            return False
        self._in = sock
        return True

    def _drain(self) -> None:
        assert self._in is not None and self._rung is not None
        with contextlib.suppress(OSError):
            while self._in.recv(16):
                pass
        self._rung.set()

    def clear(self) -> None:
        """Forget earlier rings: call before checking what a ring announces, then `wait`."""
        if self._rung is not None:
            self._rung.clear()

    async def wait(self, timeout_s: float) -> None:
        """Until rung (since `clear`) or `timeout_s` passed."""
        if self._rung is None:
            await asyncio.sleep(timeout_s)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._rung.wait()

    @property
    def listening(self) -> bool:
        return self._in is not None

    def ring(self, name: str) -> None:
        try:
            if self._out is None:
                self._out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._out.setblocking(False)
            self._out.sendto(b"!", self._prefix + name)
        except OSError:
            pass

    def close(self) -> None:
        if self._in is not None:
            with contextlib.suppress(RuntimeError, ValueError):     # the loop may be closed already
                asyncio.get_running_loop().remove_reader(self._in.fileno())
            self._in.close()
            self._in = None
        if self._out is not None:
            self._out.close()
            self._out = None


def follower_bell(pid: int) -> str:
    return f"f{pid}"


class FollowerPositions:
    def __init__(self, index_dir: Path) -> None:
        self.dir = Path(index_dir) / "followers"
        self.bell = Doorbell(Path(index_dir))

    def report(self, pos: Position, pid: int | None = None) -> None:
        """Record this process's applied position (atomic rename; no fsync: it describes memory)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / str(pid or os.getpid())
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"{pos[0]} {pos[1]}")
        os.replace(tmp, path)
        self.bell.ring(WRITER)

    def remove(self, pid: int | None = None) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / str(pid or os.getpid())).unlink()

    def read(self) -> dict[int, Position]:
        """Positions of live follower processes (files of dead ones are removed)."""
        out: dict[int, Position] = {}
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return out
        for name in names:
            if not name.isdigit():
                continue
            pid = int(name)
            if not _alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / name).unlink()
                continue
            try:
                gen, off = (self.dir / name).read_text().split()
                out[pid] = (int(gen), int(off))
            except (FileNotFoundError, ValueError):
                out[pid] = (0, 0)      # being rewritten, or just created: not there yet
        return out

    def lagging(self, target: Position) -> list[int]:
        return [pid for pid, pos in self.read().items() if pos < target]

    async def wait(self, target: Position, *, timeout_s: float = 30.0, poll_s: float = 0.002) -> bool:
        """Until every live follower has applied the log up to `target`; False after `timeout_s` (a stuck
        worker must not hold ingest forever: it is logged and ingest goes on)."""
        deadline = time.monotonic() + timeout_s
        bell = self.bell
        if bell.open(WRITER):
            poll_s = max(poll_s, RUNG_POLL_S)
        rang = False
        while True:
            bell.clear()
            behind = self.lagging(target)
            if not behind:
                return True
            if not rang:                # the write is durable: the followers may read it now
                rang = True
                for pid in behind:
                    bell.ring(follower_bell(pid))
            if time.monotonic() >= deadline:
                log.warning("followers %s have not applied the index log up to %s after %.0f s", behind, target,
                            timeout_s)
                return False
            await bell.wait(min(poll_s, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        self.bell.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
