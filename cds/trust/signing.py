"""BECKN-006 HTTP signatures (draft-cavage-http-signatures-12 profile) with Ed25519.

Signing string (exactly three lines, no trailing newline):
    (created): <unix s>\n(expires): <unix s>\ndigest: BLAKE-512=<base64 BLAKE2b-512 of the raw body>

Two inbound variants are verified (docs/decisions.md §W):
- ``ed25519``: Ed25519 over the signing string (BECKN-006; what we send).
- ``xed25519``: Ed25519 over the 64-byte BLAKE2b-512 hash of the signing string (the Beckn-One CDS test
  client; attributes separated by spaces, plus a ``Digest: BLAKE-512=…`` header) or, failing that, over the
  signing string itself (a later release of that client; docs/decisions.md §30).

Replay detection is not done here (the HTTP layer dedupes message ids, docs/decisions.md §11).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import time

import msgspec
import nacl.exceptions
import nacl.signing

from cds.core.errors import AUT_SIGNATURE_INVALID, AUT_SIGNATURE_MISSING, BecknError
from cds.keys import b64decode

MAX_HEADER_CHARS = 4096        # an honest header is ~300 chars
MAX_DIGEST_HEADER_CHARS = 1024
MAX_INT_DIGITS = 12            # unix seconds until year 33658
SIGNED_HEADERS = "(created) (expires) digest"
VARIANTS = ("ed25519", "xed25519")

# cavage-12 quotes strings but allows bare integers for created/expires (`created=1402170695`).
_ATTR = re.compile(r'(\w+)=(?:"([^"]*)"|(\d+))')
_SEPARATORS = re.compile(r"[\s,]*")
# The header as BECKN-006 writes it (and every client we know sends): read in one match. Anything else (other
# order, spacing, bare integers) goes through the lenient tokenizer; both give the same attributes.
_CANONICAL = re.compile(r'Signature keyId="([^"]*)",algorithm="([^"]*)",created="([^"]*)",expires="([^"]*)",'
                        r'headers="([^"]*)",signature="([^"]*)"')
_CANONICAL_NAMES = ("keyid", "algorithm", "created", "expires", "headers", "signature")


class SignatureHeader(msgspec.Struct, kw_only=True):
    subscriber_id: str
    key_id: str
    algorithm: str
    created: int
    expires: int
    headers: str
    signature: str
    variant: str               # "ed25519" | "xed25519"


# ---------------------------------------------------------------- keys

@functools.lru_cache(maxsize=4096)
def _verify_key(public_b64: str) -> nacl.signing.VerifyKey:
    # Decoding a point costs more than a hash; registry keys repeat, so cache them (bounded).
    # A ValueError is not cached by lru_cache, which is fine: bad keys are rare.
    raw = b64decode(public_b64, "public key")
    if len(raw) != 32:
        raise ValueError(f"public key must decode to 32 bytes, got {len(raw)}")
    return nacl.signing.VerifyKey(raw)


# ---------------------------------------------------------------- signing

def digest_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.blake2b(body, digest_size=64).digest()).decode("ascii")


def signing_string(created: int, expires: int, digest: str) -> bytes:
    return f"(created): {created}\n(expires): {expires}\ndigest: BLAKE-512={digest}".encode("ascii")


class RequestSigner:
    """Signs bodies for one identity; what is constant per identity (the checks, the keyId part of the
    header) is done once, not per body (the indexer signs an on_catalog_publish per publish)."""

    def __init__(self, *, subscriber_id: str, key_id: str, key: nacl.signing.SigningKey, ttl_s: int = 300) -> None:
        for name, v in (("subscriber_id", subscriber_id), ("key_id", key_id)):
            if not v or "|" in v or '"' in v:
                raise ValueError(f"{name} must be non-empty and contain neither '|' nor '\"'")
        self._key = key
        self._ttl = int(ttl_s)
        self._prefix = f'Signature keyId="{subscriber_id}|{key_id}|ed25519",algorithm="ed25519",created="'

    def sign(self, body: bytes, now: float | None = None) -> str:
        """The full `Authorization` header value for `body` (sign the exact bytes you send)."""
        created = int(time.time() if now is None else now)
        expires = created + self._ttl
        sig = self._key.sign(signing_string(created, expires, digest_b64(body))).signature
        return (f'{self._prefix}{created}",expires="{expires}",headers="{SIGNED_HEADERS}",'
                f'signature="{base64.b64encode(sig).decode("ascii")}"')


def sign_request(body: bytes, *, subscriber_id: str, key_id: str, key: nacl.signing.SigningKey,
                 now: float | None = None, ttl_s: int = 300) -> str:
    """The full `Authorization` header value for `body` (sign the exact bytes you send)."""
    return RequestSigner(subscriber_id=subscriber_id, key_id=key_id, key=key, ttl_s=ttl_s).sign(body, now)


# ---------------------------------------------------------------- parsing

def _invalid(reason: str) -> BecknError:
    return BecknError(AUT_SIGNATURE_INVALID, f"invalid signature: {reason}", 401)


def _int_attr(attrs: dict[str, str], name: str) -> int:
    v = attrs.get(name)
    if v is None:
        raise _invalid(f"missing {name}")
    if not v.isascii() or not v.isdigit() or len(v) > MAX_INT_DIGITS:
        raise _invalid(f"{name} must be unix seconds")
    return int(v)


def _attributes(text: str) -> dict[str, str]:
    """The header's attributes, names lower-cased (the lenient reading: see `parse_authorization`)."""
    if text[:9].lower() == "signature" and (len(text) == 9 or text[9] in " \t,"):
        text = text[9:]
    attrs: dict[str, str] = {}
    pos = 0
    for m in _ATTR.finditer(text):
        if not _SEPARATORS.fullmatch(text, pos, m.start()):
            raise _invalid("unparsable Authorization header")
        pos = m.end()
        name = m.group(1).lower()
        if name in attrs:
            raise _invalid(f"duplicate attribute {m.group(1)}")
        attrs[name] = m.group(2) if m.group(2) is not None else m.group(3)
    if not _SEPARATORS.fullmatch(text, pos):
        raise _invalid("unparsable Authorization header")
    return attrs


def parse_authorization(value: str | None) -> SignatureHeader:
    """Parse an `Authorization` (or `X-Gateway-Authorization`) header leniently: commas and/or spaces
    between attributes, `Signature ` prefix optional, bare integers for created/expires."""
    if value is None or not value.strip():
        raise BecknError(AUT_SIGNATURE_MISSING, "Authorization header with a Beckn signature is required", 401)
    if len(value) > MAX_HEADER_CHARS:
        raise _invalid(f"Authorization header longer than {MAX_HEADER_CHARS} characters")
    text = value.strip()
    m = _CANONICAL.fullmatch(text)
    attrs = dict(zip(_CANONICAL_NAMES, m.groups())) if m is not None else _attributes(text)
    key_id_attr = attrs.get("keyid")
    if not key_id_attr:
        raise _invalid("missing keyId")
    parts = key_id_attr.split("|")
    if len(parts) != 3 or not all(parts):
        raise _invalid('keyId must be "subscriber_id|key_id|algorithm"')
    subscriber_id, key_id, key_alg = parts
    variant = key_alg.lower()
    if variant not in VARIANTS:
        raise _invalid(f"unsupported algorithm {key_alg[:32]!r} (ed25519 or xed25519)")
    algorithm = attrs.get("algorithm", key_alg)   # absent: the keyId says it
    if algorithm.lower() != variant:
        raise _invalid("algorithm does not match the keyId's algorithm")
    headers = " ".join(attrs.get("headers", SIGNED_HEADERS).lower().split())
    if headers != SIGNED_HEADERS:
        raise _invalid(f'headers must be "{SIGNED_HEADERS}"')
    signature = attrs.get("signature")
    if not signature:
        raise _invalid("missing signature")
    return SignatureHeader(subscriber_id=subscriber_id, key_id=key_id, algorithm=algorithm,
                           created=_int_attr(attrs, "created"), expires=_int_attr(attrs, "expires"),
                           headers=headers, signature=signature, variant=variant)


# ---------------------------------------------------------------- verification

def _check_digest_header(digest_header: str, digest: str) -> None:
    if len(digest_header) > MAX_DIGEST_HEADER_CHARS:
        raise _invalid("Digest header too long")
    # RFC 3230 allows several comma-separated `alg=value` items; base64 has no commas.
    for item in digest_header.split(","):
        alg, sep, val = item.strip().partition("=")
        if sep and alg.strip().upper() == "BLAKE-512":
            if val.strip() != digest:
                raise _invalid("Digest header does not match the body")
            return
    raise _invalid("Digest header carries no BLAKE-512 value")


def verify_request(header: SignatureHeader, body: bytes, public_key_b64: str, *, now: float | None = None,
                   skew_s: int = 5, digest_header: str | None = None, max_validity_s: int = 3600,
                   digest: str | None = None) -> None:
    """Raise BecknError(AUT_SIGNATURE_INVALID, 401) unless `header` is a valid signature of `body`.
    `digest`: `digest_b64(body)` when the caller computed it already (off the event loop, for a big body)."""
    now = time.time() if now is None else now
    if header.expires < header.created:
        raise _invalid("expires is before created")
    if header.expires - header.created > max_validity_s:
        # The replay cache remembers a signature only this long (docs/decisions.md §11).
        raise _invalid(f"validity window longer than {max_validity_s} s")
    if header.created > now + skew_s:
        raise _invalid("created is in the future")
    if header.expires < now:
        raise _invalid("signature expired")
    digest = digest if digest is not None else digest_b64(body)
    if digest_header is not None:
        _check_digest_header(digest_header, digest)
    try:
        verify_key = _verify_key(public_key_b64)
    except (ValueError, TypeError, nacl.exceptions.CryptoError):
        raise _invalid("the registry's signing public key is unusable") from None
    try:
        sig = b64decode(header.signature, "signature")
    except ValueError:
        raise _invalid("signature is not valid base64") from None
    if len(sig) != 64:
        raise _invalid("signature must be 64 bytes")
    message = signing_string(header.created, header.expires, digest)
    # xed25519: the hash first, then the plain string (docs/decisions.md §30).
    candidates = ((hashlib.blake2b(message, digest_size=64).digest(), message) if header.variant == "xed25519"
                  else (message,))
    for candidate in candidates:
        try:
            verify_key.verify(candidate, sig)
            return
        except nacl.exceptions.BadSignatureError:
            continue
    raise _invalid("signature does not verify")
