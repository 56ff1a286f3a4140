"""locust: a BAP sending the discover query mix, a fresh Ed25519 signature on every request.

Run by `python -m loadtests.bench` (never imported by pytest: locust's gevent monkey-patching must own its
process). Manually:

    LOADTEST_DIR=/tmp/bench LOADTEST_MODE=sync python -m locust -f loadtests/locustfile_discover.py \
        --headless -u 20 -r 20 -t 30s --host http://127.0.0.1:8080

Environment (see also loadtests/locust_support.py):
  LOADTEST_DIR           participants.json (the BAP key) and queries.jsonl ({"kind", "body"} lines), as
                         written by `python -m cds.demo.generator` or the bench runner
  LOADTEST_MODE          sync  = GET /beckn/discover, the full on_discover is the response (default)
                         async = POST /beckn/discover, the ACK is the response; on_discover goes to bap_uri
  LOADTEST_CALLBACK_URI  bap_uri sent in the context (async mode; its host must match the registry record)
  LOADTEST_BASE_PATH     default /beckn
  LOADTEST_RATE          requests/s per user, each user on a random phase; 0 or unset = closed loop, no wait
  LOADTEST_RECORD        file to write exact per-request timings to when the test stops (JSON)
  LOADTEST_TRACK         1 = in sync mode too, record (message_id, sent, answered) per request (fan-out joins)
  LOADTEST_EXPECT        bytes a good sync answer contains (default "catalogs"; the hello-world baseline
                         runs this same file with "Hello", so both runs cost the client the same)

Each request gets new transaction/message ids and timestamp, is serialised once and signed over exactly those
bytes (the message part of each query is serialised once at start-up, so per request the client does what a
real BAP must: the context, the digest, the signature). In async mode every ACKed message id is recorded with
its send and ACK times, so the runner can join them with the sink's on_discover receipt times (and, with
LOADTEST_TRACK=1, sync answers with the mock BPPs' reply times).
"""

from __future__ import annotations

import itertools
import os
import random
import time
import uuid

from locust import FastHttpUser, task

from loadtests.locust_support import (  # noqa: E402 - locust first
    BASE, CALLBACK_URI, DIR, Recorder, Signer, check, rfc3339, pacing, participants, stagger)

import orjson  # noqa: E402

MODE = os.environ.get("LOADTEST_MODE", "sync")
EXPECT = os.environ.get("LOADTEST_EXPECT", '"catalogs"').encode()
if MODE not in ("sync", "async"):
    raise SystemExit(f"LOADTEST_MODE must be sync or async, not {MODE!r}")


def _load_queries() -> list[tuple[str, bytes, dict]]:
    """(kind, serialised message, context template) per query line."""
    out = []
    with open(DIR / "queries.jsonl", "rb") as f:
        for line in f:
            if line.strip():
                q = orjson.loads(line)
                out.append((q["kind"], orjson.dumps(q["body"].get("message", {})), q["body"]["context"]))
    if not out:
        raise SystemExit(f"no queries in {DIR / 'queries.jsonl'}")
    return out


_QUERIES = _load_queries()
_BAP = Signer(participants()["bap"])
_rec = Recorder(MODE)
_hits: dict[str, list[int]] = _rec.extra.setdefault("hits", {})           # sync: kind -> [with items, all]
# async: (message_id, sent, ACKed); sync with LOADTEST_TRACK=1: (message_id, sent, answered)
_tracked: list[tuple[str, float, float]] = _rec.extra.setdefault("tracked", [])
TRACK = MODE == "async" or os.environ.get("LOADTEST_TRACK") == "1"


def signed_discover(query: tuple[str, bytes, dict], now: float) -> tuple[str, bytes, dict[str, str]]:
    """A fresh context and signature for one query: (message_id, body, headers)."""
    _, msg, template = query
    mid = str(uuid.uuid4())
    ctx = {**template, "transaction_id": str(uuid.uuid4()), "message_id": mid, "timestamp": rfc3339(now),
           "bap_id": _BAP.subscriber_id}
    if CALLBACK_URI:
        ctx["bap_uri"] = CALLBACK_URI
    body = b'{"context":' + orjson.dumps(ctx) + b',"message":' + msg + b"}"
    return mid, body, _BAP.headers(body, now)


class DiscoverUser(FastHttpUser):
    wait_time = pacing()

    def on_start(self) -> None:
        # Each user walks the mix from its own random offset: the same content, no lock-step.
        self._queries = itertools.islice(itertools.cycle(_QUERIES), random.randrange(len(_QUERIES)), None)
        stagger(self)

    @task
    def discover(self) -> None:
        q = next(self._queries)
        kind = q[0]
        t = time.time()
        mid, body, headers = signed_discover(q, t)
        if MODE == "sync":
            with self.client.request("GET", BASE + "/discover", data=body, headers=headers,
                                     name=f"GET discover {kind}", catch_response=True) as resp:
                if check(resp, EXPECT):
                    if TRACK:
                        _tracked.append((mid, t, time.time()))
                    h = _hits.setdefault(kind, [0, 0])
                    h[0] += b'"beckn:items"' in resp.content
                    h[1] += 1
        else:
            with self.client.request("POST", BASE + "/discover", data=body, headers=headers,
                                     name=f"POST discover {kind}", catch_response=True) as resp:
                if check(resp, b'"ACK"'):
                    _tracked.append((mid, t, time.time()))
