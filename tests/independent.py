"""An independent BECKN-006 verifier for tests (hashlib + pynacl only, no project code), so that
a bug in cds.trust.signing cannot make its own output look valid."""

from __future__ import annotations

import base64
import hashlib
import re

from nacl.signing import VerifyKey


def verify_beckn_signature(header: str, body: bytes, public_key_b64: str) -> dict[str, str]:
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', header))
    assert header.startswith("Signature "), header
    assert attrs["algorithm"] == "ed25519"
    assert attrs["headers"] == "(created) (expires) digest"
    digest = base64.b64encode(hashlib.blake2b(body, digest_size=64).digest()).decode()
    signing_string = f"(created): {attrs['created']}\n(expires): {attrs['expires']}\ndigest: BLAKE-512={digest}"
    VerifyKey(base64.b64decode(public_key_b64)).verify(signing_string.encode(), base64.b64decode(attrs["signature"]))
    return attrs
