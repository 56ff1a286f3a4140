"""Ed25519 key material: parsing the configured private key, making key pairs. Low enough that the
settings loader can validate CDS_SIGNING_PRIVATE_KEY without importing the signature machinery."""

from __future__ import annotations

import base64
import binascii

import nacl.signing


def b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as e:   # ValueError: non-ASCII input
        raise ValueError(f"{what} is not valid base64") from e


def load_private_key(b64: str) -> nacl.signing.SigningKey:
    """A base64 32-byte Ed25519 seed, or a 64-byte libsodium secret key (seed || public key)."""
    if not isinstance(b64, str) or not b64.strip():
        raise ValueError("signing private key is empty")
    raw = b64decode(b64, "signing private key")
    if len(raw) == 32:
        return nacl.signing.SigningKey(raw)
    if len(raw) == 64:
        key = nacl.signing.SigningKey(raw[:32])
        if bytes(key.verify_key) != raw[32:]:
            raise ValueError("64-byte signing private key: its public half does not match its seed")
        return key
    raise ValueError(
        f"signing private key must decode to 32 bytes (seed) or 64 bytes (seed||public key), got {len(raw)}")


def public_key_b64(key: nacl.signing.SigningKey) -> str:
    return base64.b64encode(bytes(key.verify_key)).decode("ascii")


def generate_keypair() -> tuple[str, str]:
    """(seed_b64, public_b64) for a new Ed25519 key."""
    key = nacl.signing.SigningKey.generate()
    return base64.b64encode(bytes(key)).decode("ascii"), public_key_b64(key)
