"""BECKN-006 signing: published vectors, round trips, tampering, lenient parsing, the xed25519 variant."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds import keys
from cds.trust import signing
from cds.core.errors import AUT_SIGNATURE_INVALID, AUT_SIGNATURE_MISSING, BecknError

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "fixtures/spec/signing/beckn-signing-test-vectors.json").read_text())
BAP = VECTORS["bap_request_signature"]
BG = VECTORS["gateway_x_gateway_authorization"]
V2 = VECTORS["v2_doc_variant_BROKEN_in_source"]
BODY = BAP["body_exact_bytes_utf8"].encode()


def _invalid(exc: pytest.ExceptionInfo[BecknError], reason: str) -> None:
    assert exc.value.code == AUT_SIGNATURE_INVALID
    assert exc.value.status == 401
    assert reason in exc.value.message


# ---------------------------------------------------------------- published vectors

def test_blake2b_sanity_vector():
    v = VECTORS["blake2b_512_sanity"]
    assert signing.digest_b64(v["input_utf8"].encode()) == v["base64"]
    assert base64.b64decode(v["base64"]).hex() == v["hex"]


def test_bap_vector_digest_signing_string_and_signature():
    assert signing.digest_b64(BODY) == BAP["digest_b64"]
    ss = signing.signing_string(BAP["created"], BAP["expires"], BAP["digest_b64"])
    assert ss == BAP["signing_string"].encode()
    key = keys.load_private_key(BAP["signing_private_key_b64_64byte_seed_plus_pub"])
    assert keys.public_key_b64(key) == BAP["signing_public_key_b64"]
    header = signing.sign_request(BODY, subscriber_id="example-bap.com", key_id="ae3ea24b-cfec-495e-81f8-044aaef164ac",
                                  key=key, now=BAP["created"], ttl_s=BAP["expires"] - BAP["created"])
    # Ed25519 is deterministic: the whole header must equal the published one byte for byte.
    assert header == BAP["authorization_header_example"]


def test_bap_vector_header_verifies():
    h = signing.parse_authorization(BAP["authorization_header_example"])
    assert (h.subscriber_id, h.key_id, h.variant) == ("example-bap.com", "ae3ea24b-cfec-495e-81f8-044aaef164ac", "ed25519")
    assert (h.created, h.expires) == (BAP["created"], BAP["expires"])
    signing.verify_request(h, BODY, BAP["signing_public_key_b64"], now=BAP["created"] + 10,
                           digest_header="BLAKE-512=" + BAP["digest_b64"])


def test_gateway_vector_verifies_and_wrong_key_fails():
    h = signing.parse_authorization(BG["x_gateway_authorization_header_example"])
    signing.verify_request(h, BODY, BG["signing_public_key_b64"], now=BG["created"])
    assert keys.public_key_b64(keys.load_private_key(BG["signing_private_key_b64_64byte_seed_plus_pub"])) \
        == BG["derived_public_key_b64"]
    with pytest.raises(BecknError) as e:
        signing.verify_request(h, BODY, BAP["signing_public_key_b64"], now=BG["created"])
    _invalid(e, "does not verify")


def test_v2_body_corrected_values():
    body = V2["body_exact_bytes_utf8"].encode()
    assert signing.digest_b64(body) == V2["correct_digest_b64"]
    assert signing.digest_b64(body) != V2["printed_digest_in_source_WRONG"]
    assert signing.signing_string(V2["created"], V2["expires"], V2["correct_digest_b64"]) \
        == V2["correct_signing_string"].encode()
    key = keys.load_private_key(BAP["signing_private_key_b64_64byte_seed_plus_pub"])
    header = signing.sign_request(body, subscriber_id="bap.example.com", key_id="k1", key=key,
                                  now=V2["created"], ttl_s=V2["expires"] - V2["created"])
    assert f'signature="{V2["correct_signature_b64_with_bap_key"]}"' in header
    signing.verify_request(signing.parse_authorization(header), body, BAP["signing_public_key_b64"], now=V2["created"])


# ---------------------------------------------------------------- keys

def test_seed_and_libsodium_forms_are_the_same_key():
    raw64 = base64.b64decode(BAP["signing_private_key_b64_64byte_seed_plus_pub"])
    seed_b64 = base64.b64encode(raw64[:32]).decode()
    k32 = keys.load_private_key(seed_b64)
    k64 = keys.load_private_key(BAP["signing_private_key_b64_64byte_seed_plus_pub"])
    assert bytes(k32) == bytes(k64)
    assert keys.public_key_b64(k32) == BAP["signing_public_key_b64"]


def test_devkit_seed_matches_published_public_key():
    # DEG devkit pair quoted in the reference (§7.1).
    key = keys.load_private_key("9NBh67Pk/6v3irrkYZHlQ5E1qw+GivHdDFtKeCylzIM=")
    assert keys.public_key_b64(key) == "Z3Hnc8FZDo/7dwWApeRVs6OV560gr7uxPsFUDGUMsBg="


@pytest.mark.parametrize("value, reason", [
    ("", "empty"),
    ("not base64!!", "base64"),
    (base64.b64encode(b"x" * 31).decode(), "got 31"),
    (base64.b64encode(b"x" * 48).decode(), "got 48"),
    # 64 bytes whose second half is not the seed's public key
    (base64.b64encode(b"\x01" * 64).decode(), "public half"),
])
def test_bad_private_keys(value, reason):
    with pytest.raises(ValueError, match=reason):
        keys.load_private_key(value)


def test_generate_keypair():
    seed, pub = keys.generate_keypair()
    assert len(base64.b64decode(seed)) == 32
    assert keys.public_key_b64(keys.load_private_key(seed)) == pub
    assert keys.generate_keypair()[0] != seed


# ---------------------------------------------------------------- round trip and tampering

SEED, PUB = keys.generate_keypair()
KEY = keys.load_private_key(SEED)
NOW = 1_700_000_000


def _signed(body: bytes = b'{"a":1}', now: int = NOW, ttl: int = 300) -> str:
    return signing.sign_request(body, subscriber_id="bap.example.com", key_id="key-1", key=KEY, now=now, ttl_s=ttl)


def test_round_trip():
    h = signing.parse_authorization(_signed())
    assert (h.subscriber_id, h.key_id, h.algorithm, h.expires - h.created) == ("bap.example.com", "key-1", "ed25519", 300)
    signing.verify_request(h, b'{"a":1}', PUB, now=NOW + 1)


def test_tampered_body():
    with pytest.raises(BecknError) as e:
        signing.verify_request(signing.parse_authorization(_signed()), b'{"a":2}', PUB, now=NOW)
    _invalid(e, "does not verify")


@pytest.mark.parametrize("field, delta", [("created", -1), ("expires", 1)])
def test_tampered_timestamps(field, delta):
    h = signing.parse_authorization(_signed())
    setattr(h, field, getattr(h, field) + delta)
    with pytest.raises(BecknError) as e:
        signing.verify_request(h, b'{"a":1}', PUB, now=NOW)
    _invalid(e, "does not verify")


def test_tampered_signature():
    h = signing.parse_authorization(_signed())
    sig = bytearray(base64.b64decode(h.signature))
    sig[0] ^= 1
    h.signature = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(BecknError) as e:
        signing.verify_request(h, b'{"a":1}', PUB, now=NOW)
    _invalid(e, "does not verify")


@pytest.mark.parametrize("signature, reason", [("@@@", "base64"), (base64.b64encode(b"x" * 63).decode(), "64 bytes")])
def test_malformed_signature_value(signature, reason):
    h = signing.parse_authorization(_signed())
    h.signature = signature
    with pytest.raises(BecknError) as e:
        signing.verify_request(h, b'{"a":1}', PUB, now=NOW)
    _invalid(e, reason)


@pytest.mark.parametrize("pub", ["", "%%%", base64.b64encode(b"k" * 31).decode()])
def test_bad_registry_key(pub):
    with pytest.raises(BecknError) as e:
        signing.verify_request(signing.parse_authorization(_signed()), b'{"a":1}', pub, now=NOW)
    _invalid(e, "public key")


def test_expiry_has_zero_tolerance():
    h = signing.parse_authorization(_signed(ttl=300))
    signing.verify_request(h, b'{"a":1}', PUB, now=NOW + 300)          # expires == now: still valid
    with pytest.raises(BecknError) as e:
        signing.verify_request(h, b'{"a":1}', PUB, now=NOW + 300.5)
    _invalid(e, "expired")


def test_created_in_future_beyond_skew():
    h = signing.parse_authorization(_signed())
    signing.verify_request(h, b'{"a":1}', PUB, now=NOW - 5, skew_s=5)
    with pytest.raises(BecknError) as e:
        signing.verify_request(h, b'{"a":1}', PUB, now=NOW - 6, skew_s=5)
    _invalid(e, "future")


def test_expires_before_created_and_overlong_window():
    h = signing.parse_authorization(_signed())
    h.expires = h.created - 1
    with pytest.raises(BecknError) as e:
        signing.verify_request(h, b'{"a":1}', PUB, now=NOW)
    _invalid(e, "before created")
    h2 = signing.parse_authorization(_signed(ttl=7200))
    with pytest.raises(BecknError) as e:
        signing.verify_request(h2, b'{"a":1}', PUB, now=NOW, max_validity_s=3600)
    _invalid(e, "longer than 3600")


def test_digest_header_checked_for_plain_ed25519():
    h = signing.parse_authorization(_signed())
    good = "BLAKE-512=" + signing.digest_b64(b'{"a":1}')
    signing.verify_request(h, b'{"a":1}', PUB, now=NOW, digest_header=good)
    signing.verify_request(h, b'{"a":1}', PUB, now=NOW, digest_header="SHA-256=abc, blake-512=" + good[10:])
    with pytest.raises(BecknError) as e:
        signing.verify_request(h, b'{"a":1}', PUB, now=NOW, digest_header="BLAKE-512=" + signing.digest_b64(b"x"))
    _invalid(e, "Digest header does not match")
    with pytest.raises(BecknError) as e:
        signing.verify_request(h, b'{"a":1}', PUB, now=NOW, digest_header="SHA-256=abc")
    _invalid(e, "no BLAKE-512")


def test_sign_request_refuses_ids_that_break_the_key_id():
    with pytest.raises(ValueError):
        signing.sign_request(b"", subscriber_id="a|b", key_id="k", key=KEY)
    with pytest.raises(ValueError):
        signing.sign_request(b"", subscriber_id="a", key_id='k"', key=KEY)


# ---------------------------------------------------------------- parsing

@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_header(value):
    with pytest.raises(BecknError) as e:
        signing.parse_authorization(value)
    assert (e.value.code, e.value.status) == (AUT_SIGNATURE_MISSING, 401)


def test_space_separated_comma_separated_and_no_prefix_parse_alike():
    comma = _signed()
    variants = [
        comma,
        comma.replace('",', '" '),                       # spaces only
        comma.replace('",', '", '),                      # comma + space
        comma[len("Signature "):],                       # no scheme
        comma.replace("Signature ", "signature  "),
        comma.replace('created="%d"' % NOW, "created=%d" % NOW),   # cavage allows bare integers
    ]
    parsed = [signing.parse_authorization(v) for v in variants]
    assert all(p == parsed[0] for p in parsed)
    for p in parsed:
        signing.verify_request(p, b'{"a":1}', PUB, now=NOW)


def test_subscriber_ids_with_dots_and_colons():
    hdr = signing.sign_request(b"{}", subscriber_id="did:web:bpp.example.com:8443", key_id="76EU7PktCX", key=KEY, now=NOW)
    h = signing.parse_authorization(hdr)
    assert (h.subscriber_id, h.key_id) == ("did:web:bpp.example.com:8443", "76EU7PktCX")


@pytest.mark.parametrize("mutate, reason", [
    (lambda s: s.replace("bap.example.com|key-1|ed25519", "bap.example.com|ed25519"), "keyId must be"),
    (lambda s: s.replace("bap.example.com|key-1|ed25519", "a|b|c|ed25519"), "keyId must be"),
    (lambda s: s.replace("bap.example.com|key-1|ed25519", "|key-1|ed25519"), "keyId must be"),
    (lambda s: s.replace('algorithm="ed25519"', 'algorithm="xed25519"'), "does not match"),
    (lambda s: s.replace("|ed25519", "|rsa-sha256").replace('algorithm="ed25519"', 'algorithm="rsa-sha256"'),
     "unsupported algorithm"),
    (lambda s: s.replace('headers="(created) (expires) digest"', 'headers="(created) digest"'), "headers must be"),
    (lambda s: s.replace(',signature="', ',sig="'), "missing signature"),
    (lambda s: s.replace('created="', 'created="x'), "created must be"),
    (lambda s: s.replace('expires="', 'expires="-'), "expires must be"),
    (lambda s: s + ',keyId="x|y|ed25519"', "duplicate"),
    (lambda s: s + " junk", "unparsable"),
    (lambda s: "Bearer abc", "unparsable"),
    (lambda s: s + " " * 5000, "longer than"),
])
def test_unparsable_headers(mutate, reason):
    with pytest.raises(BecknError) as e:
        signing.parse_authorization(mutate(_signed()))
    _invalid(e, reason)


def test_algorithm_attribute_may_be_absent():
    h = signing.parse_authorization(_signed().replace('algorithm="ed25519",', ""))
    signing.verify_request(h, b'{"a":1}', PUB, now=NOW)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=300),
    st.lists(st.tuples(st.sampled_from(["keyId", "algorithm", "created", "expires", "headers", "signature", "x"]),
                       st.text(alphabet=st.characters(blacklist_characters='"'), max_size=40)),
             max_size=8).map(lambda kv: "Signature " + ",".join(f'{k}="{v}"' for k, v in kv)),
))
def test_arbitrary_headers_only_raise_beckn_errors(value):
    try:
        h = signing.parse_authorization(value)
    except BecknError as e:
        assert e.status == 401
        return
    try:
        signing.verify_request(h, b"{}", PUB, now=NOW)
    except BecknError as e:
        assert e.status == 401


# ---------------------------------------------------------------- xed25519 (Beckn-One CDS test client)

def _xed25519_client(body: bytes, seed: bytes, created: int, expires: int) -> dict[str, str]:
    """Independent re-implementation of the test client's signer (abhimail/beckn signing.js `signRequest`)."""
    digest = base64.b64encode(hashlib.blake2b(body, digest_size=64).digest()).decode()
    ss = f"(created): {created}\n(expires): {expires}\ndigest: BLAKE-512={digest}".encode()
    prehash = hashlib.blake2b(ss, digest_size=64).digest()
    sig = base64.b64encode(nacl.signing.SigningKey(seed).sign(prehash).signature).decode()
    return {
        "Digest": f"BLAKE-512={digest}",
        "Authorization": (f'Signature keyId="bap.example.com|key-1|xed25519" algorithm="xed25519" created="{created}" '
                          f'expires="{expires}" headers="(created) (expires) digest" signature="{sig}"'),
    }


def test_xed25519_client_accepted():
    body = b'{"context":{"action":"discover"}}'
    hdrs = _xed25519_client(body, base64.b64decode(SEED), NOW, NOW + 600)
    h = signing.parse_authorization(hdrs["Authorization"])
    assert h.variant == "xed25519" and h.algorithm == "xed25519"
    signing.verify_request(h, body, PUB, now=NOW + 1, digest_header=hdrs["Digest"])
    signing.verify_request(h, body, PUB, now=NOW + 1)   # the Digest header is optional


def test_xed25519_is_not_plain_ed25519():
    # An xed25519 signature (over the hash) relabelled as ed25519 must fail: ed25519 has no fallback.
    body = b"{}"
    h = signing.parse_authorization(_xed25519_client(body, base64.b64decode(SEED), NOW, NOW + 60)["Authorization"])
    h.variant = "ed25519"
    with pytest.raises(BecknError):
        signing.verify_request(h, body, PUB, now=NOW)


def _xed25519_plain_client(body: bytes, seed: bytes, created: int, expires: int) -> str:
    """The later release of that client: the label says xed25519, the signature is over the signing string."""
    digest = base64.b64encode(hashlib.blake2b(body, digest_size=64).digest()).decode()
    ss = f"(created): {created}\n(expires): {expires}\ndigest: BLAKE-512={digest}".encode()
    sig = base64.b64encode(nacl.signing.SigningKey(seed).sign(ss).signature).decode()
    return (f'Signature keyId="bap.example.com|key-1|xed25519" algorithm="xed25519" created="{created}" '
            f'expires="{expires}" headers="(created) (expires) digest" signature="{sig}"')


def test_xed25519_over_the_plain_signing_string_verifies():
    # docs/decisions.md §30: the hash first, then the signing string itself.
    body = b'{"context":{"action":"discover"}}'
    h = signing.parse_authorization(_xed25519_plain_client(body, base64.b64decode(SEED), NOW, NOW + 600))
    signing.verify_request(h, body, PUB, now=NOW + 1)


def test_xed25519_fallback_still_refuses_wrong_signatures():
    body = b'{"a":1}'
    seed = base64.b64decode(SEED)
    for signer in (_xed25519_plain_client, lambda b, s, c, e: _xed25519_client(b, s, c, e)["Authorization"]):
        h = signing.parse_authorization(signer(body, seed, NOW, NOW + 600))
        with pytest.raises(BecknError) as e:            # another body: neither form verifies
            signing.verify_request(h, b'{"a":2}', PUB, now=NOW)
        _invalid(e, "does not verify")
        with pytest.raises(BecknError) as e:            # another key
            signing.verify_request(h, body, base64.b64encode(nacl.signing.SigningKey(b"\x07" * 32).verify_key.encode()).decode(), now=NOW)
        _invalid(e, "does not verify")
        sig = bytearray(base64.b64decode(h.signature))
        sig[5] ^= 1                                      # one flipped bit
        h.signature = base64.b64encode(bytes(sig)).decode()
        with pytest.raises(BecknError) as e:
            signing.verify_request(h, body, PUB, now=NOW)
        _invalid(e, "does not verify")


def test_xed25519_digest_header_mismatch_refused():
    body = b'{"a":1}'
    hdrs = _xed25519_client(body, base64.b64decode(SEED), NOW, NOW + 600)
    other = _xed25519_client(b'{"a":2}', base64.b64decode(SEED), NOW, NOW + 600)
    h = signing.parse_authorization(hdrs["Authorization"])
    with pytest.raises(BecknError) as e:
        signing.verify_request(h, body, PUB, now=NOW, digest_header=other["Digest"])
    _invalid(e, "Digest header does not match")
    with pytest.raises(BecknError) as e:     # body swapped together with its Digest header: signature fails
        signing.verify_request(h, b'{"a":2}', PUB, now=NOW, digest_header=other["Digest"])
    _invalid(e, "does not verify")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters='"'), max_size=30), min_size=6, max_size=6))
def test_the_canonical_header_reads_as_the_lenient_tokenizer_reads_it(values):
    # the one-match reading of the usual header must give exactly the attributes of the general one
    header = 'Signature ' + ",".join(f'{k}="{v}"' for k, v in zip(
        ("keyId", "algorithm", "created", "expires", "headers", "signature"), values))
    m = signing._CANONICAL.fullmatch(header)
    assert m is not None
    assert dict(zip(signing._CANONICAL_NAMES, m.groups())) == signing._attributes(header)
