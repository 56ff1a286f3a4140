"""Per-BPP circuit breaker for the fan-out (docs/decisions.md §22).

A BPP that NACKs our discover, answers 4xx/5xx, refuses the connection, hangs or does not reply before the
deadline records a failure; `failures` consecutive failures open its circuit for `cooldown_s`. While open it
is not called. After the cool-down exactly one request is admitted as a probe (half-open); its success closes
the circuit, its failure opens it for another cool-down. A probe that never reports (its process died)
frees the probe slot again after one more cool-down.

Two implementations with the same semantics: `MemoryCircuitBreaker` (one process) and
`RedisCircuitBreaker` (shared by every replica; the decisions run as Lua scripts, so concurrent replicas
never admit two probes). `now` is passed in by the caller (the service clock), so tests move time.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol, Sequence

import msgspec

if TYPE_CHECKING:
    from redis.asyncio import Redis

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_TTL_S = 86400          # a BPP not seen for a day starts closed again
MAX_TRACKED = 100_000        # memory bound; the registry lists at most 20k BPPs


class Admission(msgspec.Struct, frozen=True):
    admitted: list[str]              # in the caller's order, at most `limit`
    states: dict[str, str]           # state of every BPP looked at (for the gauge): closed|open|half_open


class CircuitBreaker(Protocol):
    async def admit(self, bpp_ids: Sequence[str], limit: int, now: float) -> Admission:
        """Walk `bpp_ids` in order and admit up to `limit` whose circuit lets a call through (a half-open
        circuit admits its single probe here). BPPs after the limit is reached are not looked at."""

    async def record(self, bpp_id: str, ok: bool, now: float) -> str:
        """Report the outcome of one admitted call; returns the state afterwards."""

    async def state(self, bpp_id: str, now: float) -> str:
        """closed | open | half_open (read-only)."""

    async def states(self, bpp_ids: Sequence[str], now: float) -> dict[str, str]:
        """`state` of many BPPs at once (read-only; one round trip with Redis)."""


class _Entry:
    __slots__ = ("failures", "open_until", "probe_until")

    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0      # 0 = closed
        self.probe_until = 0.0     # a probe is in flight until then


def _state_of(open_until: float, now: float) -> str:
    if open_until <= 0:
        return CLOSED
    if now < open_until:
        return OPEN
    return HALF_OPEN


class MemoryCircuitBreaker:
    def __init__(self, failures: int = 5, cooldown_s: float = 30.0, max_tracked: int = MAX_TRACKED) -> None:
        self.threshold = max(1, failures)
        self.cooldown_s = cooldown_s
        self._max = max_tracked
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _get(self, bpp_id: str) -> _Entry:
        e = self._entries.get(bpp_id)
        if e is None:
            e = self._entries[bpp_id] = _Entry()
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(bpp_id)
        return e

    async def admit(self, bpp_ids: Sequence[str], limit: int, now: float) -> Admission:
        admitted: list[str] = []
        states: dict[str, str] = {}
        for bpp in bpp_ids:
            if len(admitted) >= limit:
                break
            e = self._entries.get(bpp)
            if e is None or e.open_until <= 0:
                admitted.append(bpp)
                states[bpp] = CLOSED
                continue
            if now < e.open_until or now < e.probe_until:
                states[bpp] = _state_of(e.open_until, now)
                continue
            e.probe_until = now + self.cooldown_s       # the single half-open probe
            admitted.append(bpp)
            states[bpp] = HALF_OPEN
        return Admission(admitted=admitted, states=states)

    async def record(self, bpp_id: str, ok: bool, now: float) -> str:
        e = self._get(bpp_id)
        if ok:
            e.failures, e.open_until, e.probe_until = 0, 0.0, 0.0
            return CLOSED
        e.failures += 1
        if e.open_until > 0 or e.failures >= self.threshold:
            e.open_until, e.probe_until = now + self.cooldown_s, 0.0
            return OPEN
        return CLOSED

    async def state(self, bpp_id: str, now: float) -> str:
        e = self._entries.get(bpp_id)
        return CLOSED if e is None else _state_of(e.open_until, now)

    async def states(self, bpp_ids: Sequence[str], now: float) -> dict[str, str]:
        return {b: await self.state(b, now) for b in bpp_ids}


# ---- Redis ------------------------------------------------------------------------------------------
# One hash per BPP: failures, open_until, probe_until (absent = 0). The `{cb}` hash tag keeps every
# circuit key in one cluster slot so `admit` can look at many BPPs in one script.

_ADMIT = """
local now, cooldown, limit, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local admitted, states = {}, {}
for i, key in ipairs(KEYS) do
  if #admitted >= limit then break end
  local v = redis.call('HMGET', key, 'open_until', 'probe_until')
  local open_until, probe_until = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  if open_until <= 0 then
    table.insert(admitted, i); table.insert(states, 'closed')
  elseif now < open_until then
    table.insert(states, 'open')
  elseif now < probe_until then
    table.insert(states, 'half_open')
  else
    redis.call('HSET', key, 'probe_until', tostring(now + cooldown))
    redis.call('EXPIRE', key, ttl)
    table.insert(admitted, i); table.insert(states, 'half_open')
  end
end
return {admitted, states}
"""

_RECORD = """
local now, ok, threshold, cooldown, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if ok == '1' then
  redis.call('DEL', KEYS[1])
  return 'closed'
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
local state = 'closed'
if open_until > 0 or failures >= threshold then
  redis.call('HSET', KEYS[1], 'open_until', tostring(now + cooldown), 'probe_until', '0')
  state = 'open'
end
redis.call('EXPIRE', KEYS[1], ttl)
return state
"""


class RedisCircuitBreaker:
    def __init__(self, redis: "Redis", failures: int = 5, cooldown_s: float = 30.0,
                 prefix: str = "cds:{cb}:") -> None:
        self.redis = redis
        self.threshold = max(1, failures)
        self.cooldown_s = cooldown_s
        self.prefix = prefix
        self._admit = redis.register_script(_ADMIT)
        self._record = redis.register_script(_RECORD)

    def _key(self, bpp_id: str) -> str:
        return self.prefix + bpp_id

    async def admit(self, bpp_ids: Sequence[str], limit: int, now: float) -> Admission:
        if not bpp_ids or limit <= 0:
            return Admission(admitted=[], states={})
        ids = list(bpp_ids)
        idx, states = await self._admit(keys=[self._key(b) for b in ids],
                                        args=[repr(now), repr(self.cooldown_s), limit, STATE_TTL_S])
        looked = {ids[i]: (s.decode() if isinstance(s, bytes) else s) for i, s in enumerate(states)}
        return Admission(admitted=[ids[i - 1] for i in idx], states=looked)

    async def record(self, bpp_id: str, ok: bool, now: float) -> str:
        state = await self._record(keys=[self._key(bpp_id)],
                                   args=[repr(now), "1" if ok else "0", self.threshold, repr(self.cooldown_s),
                                         STATE_TTL_S])
        return state.decode() if isinstance(state, bytes) else state

    async def state(self, bpp_id: str, now: float) -> str:
        v = await self.redis.hget(self._key(bpp_id), "open_until")
        return _state_of(float(v) if v else 0.0, now)

    async def states(self, bpp_ids: Sequence[str], now: float) -> dict[str, str]:
        ids = list(bpp_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for b in ids:
                pipe.hget(self._key(b), "open_until")
            values = await pipe.execute()
        return {b: _state_of(float(v) if v else 0.0, now) for b, v in zip(ids, values)}
