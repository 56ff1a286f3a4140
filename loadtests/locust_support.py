"""What both locustfiles share: settings from LOADTEST_* variables, a signing identity, and a recorder of
exact per-request timings. Imported only inside a locust process (locust must own its process: its gevent
monkey-patching breaks when urllib3 was imported first, reference tooling §2)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import gevent
from locust import constant, events

import orjson  # noqa: E402 - after locust on purpose (gevent patches first)

from cds.core.timeutil import rfc3339  # noqa: E402,F401 - re-exported for the locustfiles
from cds.keys import load_private_key
from cds.trust.signing import sign_request  # noqa: E402

DIR = Path(os.environ.get("LOADTEST_DIR", "."))
BASE = os.environ.get("LOADTEST_BASE_PATH", "/beckn").rstrip("/")
CALLBACK_URI = os.environ.get("LOADTEST_CALLBACK_URI")
RATE = float(os.environ.get("LOADTEST_RATE", "0") or 0)
RECORD = os.environ.get("LOADTEST_RECORD")


def pacing():
    """Closed loop (no wait) unless LOADTEST_RATE is set; then each user starts one request every 1/RATE s
    on its own random phase (see `stagger`). locust's constant_throughput is not used: it keeps every user
    on the spawn instant's phase, so N users at rate r send bursts of N concurrent requests every 1/r s, which
    measures a queue, not a steady load. A user that falls behind does not catch up with a burst."""
    if RATE <= 0:
        return constant(0)
    period = 1 / RATE

    def wait(user: Any) -> float:
        now = time.time()
        nxt = max(now, getattr(user, "_next_at", now) + period)
        user._next_at = nxt
        return nxt - now

    return wait


def stagger(user: Any) -> None:
    """Call from on_start: a paced user first sleeps a random part of its period (its phase)."""
    if RATE > 0:
        gevent.sleep(random.uniform(0, 1 / RATE))
        user._next_at = time.time()


def participants() -> dict[str, Any]:
    return orjson.loads((DIR / "participants.json").read_bytes())


class Signer:
    def __init__(self, record: dict[str, Any]) -> None:
        self.subscriber_id = record["subscriber_id"]
        self.key_id = record["key_id"]
        self._key = load_private_key(record["seed_b64"])

    def headers(self, body: bytes, now: float) -> dict[str, str]:
        return {"Content-Type": "application/json",
                "Authorization": sign_request(body, subscriber_id=self.subscriber_id, key_id=self.key_id,
                                              key=self._key, now=now)}


def check(resp: Any, marker: bytes) -> bool:
    """Success = HTTP 200 and `marker` in the body; anything else is a locust failure with the reason."""
    content = resp.content or b""
    if resp.status_code == 200 and marker in content:
        resp.success()
        return True
    resp.failure(f"HTTP {resp.status_code}: {content[:200]!r}")
    return False


class Recorder:
    """Every request's exact response time (locust's own percentiles are rounded to whole milliseconds) and
    status code; written as JSON to LOADTEST_RECORD when the test stops, with `extra` fields."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.timings: dict[str, list[float]] = {}
        self.status: dict[str, int] = {}
        self.extra: dict[str, Any] = {}
        self.started: float | None = None
        events.request.add_listener(self._on_request)
        events.test_start.add_listener(self._on_start)
        events.test_stop.add_listener(self._on_stop)

    def _on_request(self, request_type, name, response_time, response_length, response=None, **_kw) -> None:
        self.timings.setdefault(name, []).append(response_time)
        status = getattr(response, "status_code", None)
        code = str(status) if status else "no response"
        self.status[code] = self.status.get(code, 0) + 1

    def _on_start(self, **_kw) -> None:
        self.started = time.time()

    def _on_stop(self, **_kw) -> None:
        if RECORD:
            Path(RECORD).write_bytes(orjson.dumps({
                "mode": self.mode, "window": [self.started, time.time()], "timings_ms": self.timings,
                "status": self.status, **self.extra}))
