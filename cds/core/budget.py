"""Per-request work budgets (docs/decisions.md §24: every discover has a bounded cost).

A `WorkBudget` counts the CPU time a request's computation has used (planning, matching, the fan-out's
re-filtering of live replies), across threads and slices: each stretch of work runs inside
`with budget.running():`, and the loops that can grow with the data call `check()` every few steps. Past the
limit, `check()` raises `WorkLimitExceeded`, a 400 `SCH_SCHEMA_VALIDATION_FAILED` that names the limit and
the setting. CPU time of the running thread (not wall time) is counted, so a request that waits for the GIL,
the event loop or the index is not charged for it, and a refusal does not depend on how busy the machine is.

The budget in force is a context variable: set by the service for the request, read by the code deep inside
the matcher (`check()` is a no-op when no budget is set, e.g. in unit tests and offline tools).
"""

from __future__ import annotations

import contextvars
import time
from typing import Any, Awaitable, Callable, TypeVar

from cds.core.errors import SCH_SCHEMA_VALIDATION_FAILED, BecknError

T = TypeVar("T")

_clock = time.thread_time          # CPU seconds of the calling thread (a system call)
_wall = time.perf_counter          # wall seconds (no system call): a thread's CPU time never grows faster
# `check()` asks the CPU clock only once wall time since a stretch began, plus this margin, could have reached the
# limit: the two clocks need not tick alike to the microsecond (docs/decisions.md §24).
_WALL_MARGIN_S = 0.001


class WorkLimitExceeded(BecknError):
    """A request that needs more work than its budget allows: a 400 naming the limit."""

    def __init__(self, what: str, limit_ms: float, setting: str) -> None:
        super().__init__(SCH_SCHEMA_VALIDATION_FAILED,
                         f"{what} needs more than the work limit of {limit_ms:g} ms ({setting}); narrow the "
                         "request (a smaller area, fewer vertices, a more selective filter)", 400, "message")
        self.limit_ms = limit_ms


class WorkBudget:
    """CPU time allowed for one request's computation (see module doc)."""

    __slots__ = ("limit_s", "used_s", "what", "setting", "slice_s", "pause", "_since", "_since_wall", "_depth",
                 "_tokens")

    def __init__(self, limit_ms: float, *, what: str = "this discover", setting: str = "CDS_DISCOVER_WORK_MS") -> None:
        self.limit_s = max(0.0, limit_ms) / 1000.0
        # Longest stretch a sliced computation (the embedded search) runs before it yields the event loop (None:
        # the storage's default); set, shorter, for background work after an ACK (docs/decisions.md §P, "ACKs first").
        self.slice_s: float | None = None
        # How a sliced computation yields between slices (None: once, `asyncio.sleep(0)`); background answers
        # yield behind the requests waiting on the loop (docs/decisions.md §P, "ACKs first").
        self.pause: Callable[[], Awaitable[None]] | None = None
        self.used_s = 0.0
        self.what = what
        self.setting = setting
        self._since: float | None = None   # thread CPU clock when the current stretch started (None: idle)
        self._since_wall = 0.0             # wall clock then (`check`'s cheap bound)
        self._depth = 0
        self._tokens: list[contextvars.Token] = []   # of the stretches entered (`running` is re-entrant)

    @property
    def used_ms(self) -> float:
        extra = (_clock() - self._since) if self._since is not None else 0.0
        return (self.used_s + extra) * 1000.0

    def exceeded(self) -> WorkLimitExceeded:
        return WorkLimitExceeded(self.what, self.limit_s * 1000.0, self.setting)

    def running(self) -> "WorkBudget":
        """One stretch of work in the calling thread (`with b.running():`, re-entrant); the budget is in force
        inside it. The budget is its own context manager: no generator per stretch, several run per request."""
        return self

    def __enter__(self) -> "WorkBudget":
        self._tokens.append(_CURRENT.set(self))
        if self._depth == 0:
            self._since = _clock()
            self._since_wall = _wall()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._since is not None:
            self.used_s += _clock() - self._since
            self._since = None
        _CURRENT.reset(self._tokens.pop())

    def check(self) -> None:
        if self._since is not None and self.used_s + (_wall() - self._since_wall) + _WALL_MARGIN_S > self.limit_s \
                and self.used_s + (_clock() - self._since) > self.limit_s:
            raise self.exceeded()

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) as one stretch of work (for executors: the budget follows the call into the thread)."""
        with self.running():
            self.check()
            return fn(*args)


_CURRENT: contextvars.ContextVar[WorkBudget | None] = contextvars.ContextVar("cds_work_budget", default=None)


def current() -> WorkBudget | None:
    return _CURRENT.get()


class in_force:  # noqa: N801 - used like a function: `with budget.in_force(b):`
    """Make `b` the budget of the calling task (across awaits; the code that does the work charges it with
    `b.running()` around each synchronous stretch)."""

    __slots__ = ("_b", "_token")

    def __init__(self, b: WorkBudget | None) -> None:
        self._b = b

    def __enter__(self) -> WorkBudget | None:
        self._token = _CURRENT.set(self._b)
        return self._b

    def __exit__(self, *exc: object) -> None:
        _CURRENT.reset(self._token)


def check() -> None:
    """Raise WorkLimitExceeded when the budget in force (if any) is spent. Cheap: call it every few steps."""
    b = _CURRENT.get()
    if b is not None:
        b.check()
