"""The worker's Redis writes per batch, not per entry (docs/decisions.md §S "Publish", §21).

Entries finish many at a time (one Elasticsearch bulk completes a whole group): their results records
(`done` keys) and their acknowledgements are gathered while the previous round trip is in flight and go
out together, one pipeline with one multi-id ack script call. Each caller still awaits its own write, so
nothing moves on before Redis has it: a results record is stored before the entry's callback goes out and
before the next version of its catalogs is indexed, and an entry is acknowledged only after its callback.
A failed round trip fails every write in it (each caller retries or leaves its entry pending, as before);
a crash in between leaves the entries pending, to be redelivered.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from indexer.ingest.stream import IngestStream


class RedisBatch:
    """Group commit of `done` records and acknowledgements for one worker."""

    def __init__(self, stream: "IngestStream", done_ttl_s: int) -> None:
        self._stream = stream
        self._ttl = done_ttl_s
        self._sets: list[tuple[str, bytes, asyncio.Future]] = []
        self._acks: list[tuple[int, str, int, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self.round_trips = 0                  # (tests: how many writes shared a round trip)

    def record(self, key: str, value: bytes) -> asyncio.Future:
        """Store an entry's results (`done` key); the future resolves once Redis has it."""
        fut = asyncio.get_running_loop().create_future()
        self._sets.append((key, value, fut))
        self._kick()
        return fut

    def ack(self, partition: int, entry_id: str, size: int) -> asyncio.Future:
        """Acknowledge an entry (XACK + XDEL, its `done` key dropped); resolves once Redis did it."""
        fut = asyncio.get_running_loop().create_future()
        self._acks.append((partition, entry_id, size, fut))
        self._kick()
        return fut

    def _kick(self) -> None:
        # The flush runs from the next turn of the loop: everything queued in this turn joins it, and
        # whatever arrives while it is in flight goes in the next one.
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_all())

    async def _flush_all(self) -> None:
        try:
            while self._sets or self._acks:
                sets, self._sets = self._sets, []
                acks, self._acks = self._acks, []
                futs = [s[2] for s in sets] + [a[3] for a in acks]
                try:
                    await self._write(sets, acks)
                except BaseException as e:
                    _settle(futs, e)
                    if isinstance(e, asyncio.CancelledError):
                        raise
                else:
                    _settle(futs, None)
        finally:
            self._flusher = None
            # cancelled with writes still queued: their callers must not wait forever
            _settle([s[2] for s in self._sets] + [a[3] for a in self._acks], asyncio.CancelledError())
            self._sets, self._acks = [], []

    async def _write(self, sets: list, acks: list) -> None:
        self.round_trips += 1
        ids = [(p, i, n) for p, i, n, _ in acks]
        if len(sets) == 1 and not acks:       # alone: a plain SET (no pipeline bookkeeping)
            await self._stream.redis.set(sets[0][0], sets[0][1], ex=self._ttl)
            return
        if not sets:
            await self._stream.ack_many(ids)
            return
        pipe = self._stream.redis.pipeline(transaction=False)
        for key, value, _ in sets:
            pipe.set(key, value, ex=self._ttl)
        if ids:
            self._stream.queue_ack_many(pipe, ids)
        replies = await pipe.execute(raise_on_error=False)
        for r in replies:
            if isinstance(r, Exception) and not isinstance(r, NoScriptError):
                raise r
        if ids and isinstance(replies[-1], NoScriptError):     # Redis lost its scripts (restarted)
            await self._stream.ack_many(ids)


def _settle(futs: list[asyncio.Future], error: BaseException | None) -> None:
    for f in futs:
        if f.done():
            continue          # its caller gave up waiting (cancelled)
        if error is None:
            f.set_result(None)
        elif isinstance(error, asyncio.CancelledError):
            f.cancel()
        else:
            f.set_exception(error)
            f.add_done_callback(_retrieved)


def _retrieved(f: asyncio.Future) -> Any:
    if not f.cancelled():
        f.exception()
