"""Large publish bodies go to a spool file, not through the serving loop (docs/decisions.md §P, "Spooled
publishes").

A body larger than CDS_SPOOL_BYTES is written to `<data>/spool/` chunk by chunk as it arrives, with its
BLAKE2b digest computed along the way, and fsynced before the ACK. The checks before the ACK read a skeleton of
it (context, catalog ids) that a short-lived child process (`python -m cds.api.spool FILE`) parses, so no
single parse of tens of megabytes holds a serving loop; the queue entry then names the file instead of
carrying the body, and the ingest process (on the same machine) reads it and deletes it once reported.
Spooling is used only where the consumer shares the data directory: the embedded default, or the machine's
private Redis of `cds serve --workers N`; with an operator's Redis bodies travel in the queue as before.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import orjson

from cds.core.errors import BecknError
from cds.core.protocol import parse_publish_json
from indexer.ingest.entry import discard_spool


class Spooled(msgspec.Struct, kw_only=True):
    """A body kept on disk: where, how big, and its digest (base64 BLAKE2b-512, as signatures use it)."""
    path: str
    size: int
    digest: str


class SpoolWriter:
    """Receives a body's chunks in order; synchronous writes of one chunk (page cache) are short."""

    def __init__(self, spool_dir: Path) -> None:
        spool_dir.mkdir(parents=True, exist_ok=True)
        self.fd, self.path = tempfile.mkstemp(dir=spool_dir, prefix="publish-", suffix=".json")
        self.size = 0
        self._hash = hashlib.blake2b(digest_size=64)

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(chunk)

    async def finish(self) -> Spooled:
        """Durable on disk before anyone ACKs it (or, when that fails, gone)."""
        fd, self.fd = self.fd, -1
        try:
            await asyncio.to_thread(os.fsync, fd)
        except BaseException:
            discard_spool(self.path)
            raise
        finally:
            os.close(fd)
        return Spooled(path=self.path, size=self.size, digest=base64.b64encode(self._hash.digest()).decode("ascii"))

    def abandon(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        discard_spool(self.path)


async def read_skeleton(path: str) -> Any:
    """`parse_publish_json` of the file, parsed by a child process; its BecknError is raised here as is."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cds.api.spool", path,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"skeleton reader failed ({proc.returncode}): {err[-500:].decode(errors='replace')}")
    result = orjson.loads(out)
    if "error" in result:
        e = result["error"]
        raise BecknError(e["code"], e["message"], e["status"], e.get("paths"))
    return result["doc"]


def _main(path: str) -> int:
    with open(path, "rb") as f:
        body = f.read()
    try:
        out: dict[str, Any] = {"doc": parse_publish_json(body)}
    except BecknError as e:
        out = {"error": {"code": e.code, "message": e.message, "status": e.status, "paths": e.paths}}
    sys.stdout.buffer.write(orjson.dumps(out, default=_raw))
    return 0


def _raw(value: Any) -> Any:
    """Skeleton values left undecoded (a catalog's items) travel as JSON null: the checks never read them."""
    if isinstance(value, msgspec.Raw):
        return None
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
