"""Where each serving worker's copy of the embedded index stands in the write-ahead log
(docs/decisions.md §P: one writer, followers that replay its log).

Every follower keeps one small file `<index dir>/followers/<pid>` holding `<generation> <offset>`: the
log position it has applied (and so made searchable) so far. The writer reads them to know when a write
is searchable through every worker, which is when `on_catalog_publish` may go out (§21). Files of
processes that are gone are ignored and removed, so a dead worker never holds ingest up; a worker that
is still loading reports position 0 0 from its first moment, so a publish indexed meanwhile waits for it.
Per machine by construction (a local directory), like the index itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

Position = tuple[int, int]          # (log generation, byte offset just past the last applied frame)


class FollowerPositions:
    def __init__(self, index_dir: Path) -> None:
        self.dir = Path(index_dir) / "followers"

    def report(self, pos: Position, pid: int | None = None) -> None:
        """Record this process's applied position (atomic rename; no fsync: it describes memory)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / str(pid or os.getpid())
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"{pos[0]} {pos[1]}")
        os.replace(tmp, path)

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
        while True:
            behind = self.lagging(target)
            if not behind:
                return True
            if time.monotonic() >= deadline:
                log.warning("followers %s have not applied the index log up to %s after %.0f s", behind, target,
                            timeout_s)
                return False
            await asyncio.sleep(poll_s)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
