"""The demo network's participants: one BPP per CPO and the load-test BAP, with Ed25519 test keys derived from the
seed (test keys only: anyone with the seed has them).
"""

from __future__ import annotations

import base64
import hashlib
import uuid

import msgspec
import nacl.signing


def derive_keypair(seed: int, who: str) -> tuple[str, str]:
    raw = hashlib.sha256(f"ubc-loadtest:{seed}:key:{who}".encode()).digest()
    pub = nacl.signing.SigningKey(raw).verify_key.encode()
    return base64.b64encode(raw).decode(), base64.b64encode(pub).decode()


def derive_key_id(seed: int, who: str) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(f"ubc-loadtest:{seed}:kid:{who}".encode()).digest()[:16], version=4))


class BppSpec(msgspec.Struct, frozen=True):
    """One CPO = one BPP. `seed_b64` is the base64 32-byte Ed25519 seed (test keys only)."""

    subscriber_id: str
    url: str
    key_id: str
    seed_b64: str
    public_key_b64: str
    provider_id: str
    name: str
    code: str  # the 3-character operator id of the UBC connector id
    connectors: int
    catalogs: int

    def signing_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(base64.b64decode(self.seed_b64))


class BapSpec(msgspec.Struct, frozen=True):
    """The load-test BAP that signs discover requests."""

    subscriber_id: str
    url: str
    key_id: str
    seed_b64: str
    public_key_b64: str

    def signing_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(base64.b64decode(self.seed_b64))
