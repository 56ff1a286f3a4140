"""Test harness: participants with real keys, a static registry file, a callback sink (a real
HTTP server standing in for BAPs/BPPs), and a running CDS app on the embedded backend."""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from nacl.signing import SigningKey

from cds.keys import public_key_b64

from cds.trust.signing import sign_request

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name: str) -> dict[str, Any]:
    return orjson.loads((FIXTURES / name).read_bytes())


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Participant:
    subscriber_id: str
    type: str
    url: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    key_id: str = field(default_factory=lambda: f"k-{uuid.uuid4().hex[:8]}")
    status: str = "SUBSCRIBED"
    valid_until: float | None = None

    @property
    def public_key(self) -> str:
        return public_key_b64(self.key)

    def record(self) -> dict[str, Any]:
        now = time.time()
        return {"subscriber_id": self.subscriber_id, "key_id": self.key_id, "type": self.type,
                "domain": "beckn.one:deg:ev-charging", "url": self.url, "signing_public_key": self.public_key,
                "status": self.status, "valid_from": iso(now - 86400),
                "valid_until": iso(self.valid_until if self.valid_until is not None else now + 86400 * 365)}

    def sign(self, body: bytes, **kw: Any) -> dict[str, str]:
        return {"Content-Type": "application/json",
                "Authorization": sign_request(body, subscriber_id=self.subscriber_id, key_id=self.key_id,
                                              key=self.key, **kw)}


def write_registry(path: Path, participants: list[Participant]) -> Path:
    path.write_bytes(orjson.dumps([p.record() for p in participants]))
    return path


def fresh_context(doc: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A deep copy with new ids, a current timestamp and the given context fields."""
    doc = copy.deepcopy(doc)
    ctx = doc.setdefault("context", {})
    camel = "messageId" in ctx or "bapId" in ctx
    ctx["messageId" if camel else "message_id"] = str(uuid.uuid4())
    ctx["transactionId" if camel else "transaction_id"] = str(uuid.uuid4())
    ctx["timestamp"] = iso(time.time())
    ctx.update(fields)
    return doc


class CallbackSink:
    """A real HTTP server recording every POST (a BAP's or BPP's callback endpoint)."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.status = status
        self._cond = asyncio.Condition()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self._cond:
            self.received.append((request.path, dict(request.headers), body))
            self._cond.notify_all()
        return web.json_response({"message": {"ack": {"status": "ACK" if self.status == 200 else "NACK"}}},
                                 status=self.status)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def start(self) -> "CallbackSink":
        await self.server.start_server()
        return self

    async def close(self) -> None:
        await self.server.close()

    async def wait_for(self, n: int = 1, timeout: float = 10.0) -> list[tuple[str, dict[str, str], bytes]]:
        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(lambda: len(self.received) >= n), timeout)
            return list(self.received)


async def start_client(app: web.Application) -> TestClient:
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client
