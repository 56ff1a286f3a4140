"""Child process for the SIGKILL tests of the embedded store and the ingest log.

    python tests/crash_child.py store  <dir>   # replaces catalogs, prints "ACKED <catalog id>" after each returns
    python tests/crash_child.py ingest <dir>   # appends/acks entries, prints "APPENDED <seq> <payload>" / "ACKED <seq>"

It runs until killed. Several writers run concurrently (group commit), fsync is on, and the logs
are kept small so snapshots / segment rotations happen while the parent's SIGKILL can land.
Content is derived from the names (`crash_record`, `crash_payload`) so the parent can check it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cds.core.documents import CatalogMeta, CatalogRecord, ItemDoc  # noqa: E402


def crash_record(catalog_id: str) -> CatalogRecord:
    n = 1 + sum(map(ord, catalog_id)) % 7
    items = [ItemDoc(bpp_id="bpp.crash", catalog_id=catalog_id, item_id=f"{catalog_id}-i{k}",
                     lon=77.0 + k * 0.01, lat=12.0 + k * 0.01, qr=f"qr-{catalog_id}-{k}",
                     raw=b'{"pad":"' + b"x" * 500 + b'"}') for k in range(n)]
    return CatalogRecord(meta=CatalogMeta(bpp_id="bpp.crash", catalog_id=catalog_id, published_at=1.0,
                                          item_count=n, header=catalog_id.encode()), items=items)


def crash_payload(writer: int, n: int) -> bytes:
    return f"w{writer}-{n}:".encode() + bytes(range(256)) * (1 + n % 3)


def spawn_and_kill(mode: str, directory: Path, until: Callable[[list[str]], bool],
                   timeout: float = 60.0) -> list[str]:
    """Run the child until `until(lines)` holds, SIGKILL it, and return every line it printed
    (lines already in the pipe at the kill count too: they were printed after the call returned)."""
    proc = subprocess.Popen([sys.executable, __file__, mode, str(directory)],
                            stdout=subprocess.PIPE, text=True)
    guard = threading.Timer(timeout, proc.kill)          # never hang the test run
    guard.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            if until(lines):
                break
        proc.send_signal(signal.SIGKILL)
        lines.extend(x.strip() for x in proc.stdout.read().splitlines())
        proc.wait()
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, f"child ended on its own: {proc.returncode}"
    return [x for x in lines if x]


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run_store(directory: Path) -> None:
    from indexer.embedded.store import EmbeddedStorage

    store = EmbeddedStorage(directory, fsync=True, snapshot_bytes=32 << 10)
    await store.open()
    _say("READY")

    async def writer(w: int) -> None:
        n = 0
        while True:
            cid = f"c{w}-{n}"
            await store.replace_catalog(crash_record(cid))
            _say(f"ACKED {cid}")
            n += 1

    await asyncio.gather(*(writer(w) for w in range(4)))


async def run_ingest(directory: Path) -> None:
    from indexer.ingest.log import IngestLog

    ingest = IngestLog(directory, fsync=True, segment_bytes=8 << 10)
    await ingest.open()
    _say("READY")

    async def writer(w: int) -> None:
        n = 0
        while True:
            payload = crash_payload(w, n)
            seq = await ingest.append(payload)
            _say(f"APPENDED {seq} w{w}-{n}")
            if n % 3 == 0:
                await ingest.ack(seq)
                _say(f"ACKED {seq}")
            n += 1

    await asyncio.gather(*(writer(w) for w in range(4)))


if __name__ == "__main__":
    mode, directory = sys.argv[1], Path(sys.argv[2])
    asyncio.run(run_store(directory) if mode == "store" else run_ingest(directory))
