"""Pending fan-out requests: which BPPs were asked, until when, and the replies accepted so far.

The replica that received the discover (the *owner*) opens a record, sends the fan-out and waits; a BPP's
`on_discover` may land on any replica, which checks it against the record and `offer`s it. An offer is
decided atomically: accepted (first reply of a targeted BPP before the deadline, while the record is open),
late, duplicate, not targeted or unknown. `finish` closes the record and returns the accepted replies the owner
has not read yet in the same atomic step, so a reply is either ACKed-and-merged or ACKed-and-dropped as late,
never ACKed-and-lost (unless the owner replica itself dies while waiting: that BAP then gets no on_discover,
and the record simply expires).

- `MemoryPendingStore`: one process (the default).
- `RedisPendingStore`: the record is a hash, accepted replies a list (both with a TTL: the deadline plus the
  late window); every accepted offer also PUBLISHes the record key on the owner's channel. The owner's
  single subscriber wakes the waiting request, which then reads the list. The list is the truth and the
  notification only a hint: the waiter always reads the list again when it finishes at the deadline, and a
  re-subscription wakes every waiter, so a lost notification can delay an early answer, never lose a reply.

Sizes are bounded: one reply per targeted BPP, each holding at most CDS_MAX_RESULTS matched items; the memory
store holds at most `max_entries` records (a fan-out that finds it full is answered from the cache only).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("cds.fanout.pending")

# Verdicts of `lookup` / `offer`.
ACCEPTED = "accepted"          # (lookup: would be accepted)
LATE = "late"                  # targeted BPP, but the request is finished or its deadline passed
DUPLICATE = "duplicate"        # this BPP already replied
NOT_TARGETED = "not_targeted"  # the request is pending, but this BPP was not asked
UNKNOWN = "unknown"            # no such pending request (never, or forgotten after the late window)

MAX_MEMORY_ENTRIES = 10_000


class PendingRecord(msgspec.Struct, kw_only=True):
    transaction_id: str
    message_id: str
    targets: list[str]
    deadline: float                          # epoch seconds (wall clock: shared by replicas)
    owner: str                               # replica that waits for the replies
    intent: bytes = b""                      # msgpack DiscoverIntent: another replica re-plans the query


class Reply(msgspec.Struct, kw_only=True, array_like=True):
    bpp_id: str
    received_at: float                       # epoch seconds when the reply was accepted
    payload: bytes                           # msgpack list[Hit]: the reply's items that match the query


_rec_enc, _rec_dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(PendingRecord)
_reply_dec = msgspec.msgpack.Decoder(Reply)


def pending_key(transaction_id: str, message_id: str) -> str:
    """A fixed-size key for (transaction_id, message_id); the length prefix keeps the pair unambiguous."""
    raw = f"{len(transaction_id)}:{transaction_id}|{message_id}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def verdict_for(state: str | None, deadline: float, answered: bool | None, now: float) -> str:
    """The shared decision rule (the Redis script implements the same)."""
    if state is None:
        return UNKNOWN
    if answered is None:
        return NOT_TARGETED
    if state != "open" or now > deadline:
        return LATE
    return DUPLICATE if answered else ACCEPTED


class PendingStore(Protocol):
    owner: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def open(self, key: str, rec: PendingRecord, ttl_s: float) -> bool:
        """Create the record (False if one exists for this key, or the store is full)."""

    async def lookup(self, key: str, bpp_id: str, now: float) -> tuple[str, PendingRecord | None]:
        """What `offer` would answer now, and the record (None when UNKNOWN). Changes nothing."""

    async def offer(self, key: str, reply: Reply) -> str:
        """Atomically accept `reply` (judged at reply.received_at) or say why not."""

    async def replies(self, key: str, start: int = 0) -> list[Reply]:
        """Accepted replies from position `start` on, in acceptance order."""

    async def finish(self, key: str, start: int = 0) -> list[Reply]:
        """Close the record (later offers are LATE) and return the accepted replies from `start` on."""

    def watch(self, key: str) -> asyncio.Event:
        """An event set whenever a reply for `key` is accepted (by any replica)."""

    def unwatch(self, key: str) -> None: ...


class _Watchers:
    """Owner-side wake-ups: one asyncio.Event per waiting request."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def watch(self, key: str) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def unwatch(self, key: str) -> None:
        self._events.pop(key, None)

    def wake(self, key: str) -> None:
        ev = self._events.get(key)
        if ev is not None:
            ev.set()

    def wake_all(self) -> None:
        for ev in self._events.values():
            ev.set()


# ---- memory -----------------------------------------------------------------------------------------

class _Entry:
    __slots__ = ("rec", "replies", "answered", "done", "expires_at")

    def __init__(self, rec: PendingRecord, expires_at: float) -> None:
        self.rec = rec
        self.replies: list[Reply] = []
        self.answered: set[str] = set()
        self.done = False
        self.expires_at = expires_at


class MemoryPendingStore(_Watchers):
    def __init__(self, max_entries: int = MAX_MEMORY_ENTRIES) -> None:
        super().__init__()
        self.owner = uuid.uuid4().hex
        self._max = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._entries.clear()

    def _live(self, key: str) -> _Entry | None:
        e = self._entries.get(key)
        if e is not None and e.expires_at <= time.time():
            del self._entries[key]
            return None
        return e

    def _sweep(self) -> None:
        now = time.time()
        # Entries are appended in opening order and share one late window, so expiry is nearly ordered.
        while self._entries:
            k, e = next(iter(self._entries.items()))
            if e.expires_at > now:
                break
            del self._entries[k]

    async def open(self, key: str, rec: PendingRecord, ttl_s: float) -> bool:
        self._sweep()
        if self._live(key) is not None or len(self._entries) >= self._max:
            return False
        self._entries[key] = _Entry(rec, time.time() + ttl_s)
        return True

    async def lookup(self, key: str, bpp_id: str, now: float) -> tuple[str, PendingRecord | None]:
        e = self._live(key)
        if e is None:
            return UNKNOWN, None
        answered = (bpp_id in e.answered) if bpp_id in e.rec.targets else None
        return verdict_for("done" if e.done else "open", e.rec.deadline, answered, now), e.rec

    async def offer(self, key: str, reply: Reply) -> str:
        verdict, _rec = await self.lookup(key, reply.bpp_id, reply.received_at)
        if verdict == ACCEPTED:
            e = self._entries[key]
            e.answered.add(reply.bpp_id)
            e.replies.append(reply)
            self.wake(key)
        return verdict

    async def replies(self, key: str, start: int = 0) -> list[Reply]:
        e = self._live(key)
        return [] if e is None else e.replies[start:]

    async def finish(self, key: str, start: int = 0) -> list[Reply]:
        e = self._live(key)
        if e is None:
            return []
        e.done = True
        return e.replies[start:]


# ---- Redis ------------------------------------------------------------------------------------------
# KEYS[1] = record hash "cds:fo:{key}", KEYS[2] = reply list "cds:fo:{key}:r" (one hash tag: one slot).
# Hash fields: rec, deadline, owner, state (open|done) and t:<bpp_id> = 0 (asked) | 1 (replied).

_OPEN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'deadline', ARGV[3], 'owner', ARGV[4], 'state', 'open')
for i = 5, #ARGV do redis.call('HSET', KEYS[1], 't:' .. ARGV[i], '0') end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

_OFFER = """
local v = redis.call('HMGET', KEYS[1], 'state', 'deadline', 'owner', 't:' .. ARGV[1])
if not v[1] then return 'unknown' end
if not v[4] then return 'not_targeted' end
if v[1] ~= 'open' or tonumber(ARGV[2]) > tonumber(v[2]) then return 'late' end
if v[4] ~= '0' then return 'duplicate' end
redis.call('HSET', KEYS[1], 't:' .. ARGV[1], '1')
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], math.max(redis.call('PTTL', KEYS[1]), 1))
redis.call('PUBLISH', ARGV[4] .. v[3], ARGV[5])
return 'accepted'
"""

_FINISH = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'state', 'done') end
return redis.call('LRANGE', KEYS[2], ARGV[1], -1)
"""

WAKE_PREFIX = "cds:fo:wake:"
RESUBSCRIBE_DELAY_S = 0.5


class RedisPendingStore(_Watchers):
    def __init__(self, redis: "Redis", prefix: str = "cds:fo:") -> None:
        super().__init__()
        self.redis = redis
        self.prefix = prefix
        self.owner = uuid.uuid4().hex
        self._channel = WAKE_PREFIX + self.owner
        self._open = redis.register_script(_OPEN)
        self._offer = redis.register_script(_OFFER)
        self._finish = redis.register_script(_FINISH)
        self._listener: asyncio.Task | None = None
        self._subscribed = asyncio.Event()

    def _keys(self, key: str) -> list[str]:
        h = f"{self.prefix}{{{key}}}"
        return [h, h + ":r"]

    async def start(self, wait_s: float = 5.0) -> None:
        """Subscribe to this replica's wake-up channel (waits briefly; a Redis that is down at start only
        delays early answers: waiters still read the replies at their deadline)."""
        self._listener = asyncio.ensure_future(self._listen())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), wait_s)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener

    async def _listen(self) -> None:
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                self.wake_all()  # anything accepted while we were not subscribed is read now
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        data = msg["data"]
                        self.wake(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - connection lost: resubscribe after a pause
                self._subscribed.clear()
                log.warning("fan-out wake-up subscription lost (%s); resubscribing", e)
                await asyncio.sleep(RESUBSCRIBE_DELAY_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def open(self, key: str, rec: PendingRecord, ttl_s: float) -> bool:
        ok = await self._open(keys=self._keys(key),
                              args=[max(1, int(ttl_s * 1000)), _rec_enc.encode(rec), repr(rec.deadline), rec.owner,
                                    *rec.targets])
        return bool(ok)

    async def lookup(self, key: str, bpp_id: str, now: float) -> tuple[str, PendingRecord | None]:
        state, deadline, rec, answered = await self.redis.hmget(self._keys(key)[0], "state", "deadline", "rec",
                                                                "t:" + bpp_id)
        if state is None or rec is None:
            return UNKNOWN, None
        verdict = verdict_for(state.decode(), float(deadline), None if answered is None else answered != b"0", now)
        return verdict, _rec_dec.decode(rec)

    async def offer(self, key: str, reply: Reply) -> str:
        out = await self._offer(keys=self._keys(key),
                                args=[reply.bpp_id, repr(reply.received_at), msgspec.msgpack.encode(reply),
                                      WAKE_PREFIX, key])
        return out.decode() if isinstance(out, bytes) else out

    async def replies(self, key: str, start: int = 0) -> list[Reply]:
        return [_reply_dec.decode(b) for b in await self.redis.lrange(self._keys(key)[1], start, -1)]

    async def finish(self, key: str, start: int = 0) -> list[Reply]:
        return [_reply_dec.decode(b) for b in await self._finish(keys=self._keys(key), args=[start])]
