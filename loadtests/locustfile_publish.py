"""locust: BPPs re-publishing their catalogs (signed catalog_publish): ACK latency under publish load.

Run by `python -m loadtests.bench` as its own process (never under pytest). Manually:

    LOADTEST_DIR=/tmp/bench python -m locust -f loadtests/locustfile_publish.py \
        --headless -u 4 -r 4 -t 15s --host http://127.0.0.1:8080

Environment (see also loadtests/locust_support.py):
  LOADTEST_DIR           participants.json (BPP keys) and publish_load/*.json (publish bodies, one BPP each,
                         e.g. some of the generator's publish/ files)
  LOADTEST_CALLBACK_URI  bpp_uri sent in the context (its host must match the BPP's registry record)
  LOADTEST_BASE_PATH     default /beckn
  LOADTEST_RATE          requests/s per user, each user on a random phase; 0 or unset = closed loop
  LOADTEST_RECORD        file for exact per-request timings when the test stops (JSON)

A re-publish of the same catalog is a FULL replace with the same content, so the index stays as seeded.
"""

from __future__ import annotations

import random
import time
import uuid

from locust import FastHttpUser, task

from loadtests.locust_support import (  # noqa: E402 - locust first
    BASE, CALLBACK_URI, DIR, Recorder, Signer, check, rfc3339, pacing, participants, stagger)

import orjson  # noqa: E402


def _load_pool() -> list[tuple[Signer, bytes, dict]]:
    """(the BPP's signer, serialised message, context template) per publish file."""
    bpps = {b["subscriber_id"]: b for b in participants()["bpps"]}
    signers: dict[str, Signer] = {}
    pool = []
    for path in sorted((DIR / "publish_load").glob("*.json")):
        doc = orjson.loads(path.read_bytes())
        ctx = doc["context"]
        bpp = ctx["bpp_id"]
        signer = signers.setdefault(bpp, Signer(bpps[bpp]))
        pool.append((signer, orjson.dumps(doc["message"]), ctx))
    if not pool:
        raise SystemExit(f"no publish bodies in {DIR / 'publish_load'}")
    return pool


_POOL = _load_pool()
_rec = Recorder("publish")


class PublishUser(FastHttpUser):
    wait_time = pacing()

    def on_start(self) -> None:
        stagger(self)

    @task
    def publish(self) -> None:
        signer, msg, template = random.choice(_POOL)
        now = time.time()
        ctx = {**template, "transaction_id": str(uuid.uuid4()), "message_id": str(uuid.uuid4()),
               "timestamp": rfc3339(now)}
        if CALLBACK_URI:
            ctx["bpp_uri"] = CALLBACK_URI
        body = b'{"context":' + orjson.dumps(ctx) + b',"message":' + msg + b"}"
        with self.client.request("POST", BASE + "/catalog/publish", data=body, name="POST catalog/publish",
                                 headers=signer.headers(body, now), catch_response=True) as resp:
            check(resp, b'"ACK"')
