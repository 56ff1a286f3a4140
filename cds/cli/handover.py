"""Publishes that a one-process `cds serve` ACKed and did not index yet (docs/decisions.md §P).

`cds serve --single-process`, and `--workers 1` of versions before the supervisor ran for every worker count,
keep ACKed publishes in the local ingest log (CDS_DATA_DIR/ingest) until indexed. The supervisor queues what
is left there on the stream before any worker accepts a publish (a publisher's catalogs keep their order),
acknowledging each in the log once the stream has it (a stop in between queues it twice: at least once,
§21), then removes the emptied log.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

import msgspec

from cds.config import Settings
from cds.core.errors import BecknError
from cds.redisconn import connect
from indexer.ingest.entry import IngestEntry
from indexer.ingest.log import IngestLog
from indexer.ingest.stream import IngestStream

log = logging.getLogger("cds.supervisor")

RETRY_S = 1.0


async def hand_over_local_log(settings: Settings, redis_url: str, *, gave_up=lambda: False) -> int:
    """Queue the local log's pending entries on the stream at `redis_url`; the number queued. A full or
    unreachable stream is retried (the ingest process, already started, drains it) until `gave_up()`."""
    directory = settings.data_path / "ingest"
    ingest_log = IngestLog(directory)
    redis = connect(msgspec.structs.replace(settings, redis_url=redis_url))
    await ingest_log.open()
    moved, done = 0, False
    try:
        stream = IngestStream.from_settings(redis, settings)
        await stream.open()
        for seq, data in await ingest_log.pending():
            try:
                # not decode_entry: a spooled body stays in its file, and the stream entry names it as this did
                entry = msgspec.msgpack.decode(data, type=IngestEntry)
            except msgspec.DecodeError:     # as the one-process pipeline did: it must not block the rest
                log.error("skipping undecodable ingest entry %d", seq)
                await ingest_log.ack(seq)
                continue
            while True:
                try:
                    await stream.append(entry)
                    break
                except BecknError as e:
                    if gave_up():
                        return moved
                    log.warning("queueing the one-process ingest log: %s; retrying", e.message)
                    await asyncio.sleep(RETRY_S)
            await ingest_log.ack(seq)
            moved += 1
        done = not await ingest_log.pending()
    finally:
        await ingest_log.close()
        await redis.aclose()
    if done:
        shutil.rmtree(directory, ignore_errors=True)
    if moved:
        log.info("queued %d publishes that a one-process `cds serve` had ACKed and not indexed", moved)
    return moved
