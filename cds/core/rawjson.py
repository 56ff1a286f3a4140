"""Stored JSON of items and offers, kept compressed (docs/decisions.md §P "Memory of one index copy").

`ItemDoc.raw` / `OfferDoc.raw` hold either the compact JSON as published or its packed form:
``b"\\x00" + <dictionary version byte> + <raw deflate stream>``, compressed with a preset dictionary
(zlib `zdict`) so that one document decodes on its own in microseconds. No JSON text starts with a
NUL byte, so both forms can be told apart and may be mixed (documents stored before packing existed,
or by a backend that does not pack, stay plain). Read them only through `item_json` / `offer_json`
(`cds.core.documents`) or `unpack`.

The dictionary is fixed and versioned: `data/json-dict-<n>.txt` holds the items and offers of the UBC
publish example in both dialects (compact JSON, so the schema's keys, `@context` URLs and common values
are there). A packed document names its version, so a version, once released, must never change
(its CRC is pinned below); a better dictionary is a new version, and the old ones stay for stored data.
"""

from __future__ import annotations

import threading
import zlib
from importlib import resources

MARK = b"\x00"
_CURRENT = 1
_CRC = {1: 0x92246231}                # pinned: packed data in snapshots depends on these exact bytes
_WBITS = -15                          # raw deflate (no zlib header/checksum: the frames carry CRCs)
_LEVEL = 3                            # level 6 packs 4 % smaller for a third more time per document
# The packer's window: 16 KB instead of 32 KB halves the state copied per document (~6 -> ~2.5 µs of ~23) and
# packs as small (a document is ~1.5 KB; the dictionary's last 16 KB are used). Unpacking keeps the 32 KB
# window, which reads both (distances only reach back less far), so stored data is unaffected either way.
_PACK_WBITS = -14
_dicts: dict[int, bytes] = {}
_primed: dict[int, "zlib._Compress"] = {}
_lock = threading.Lock()


def dictionary(version: int) -> bytes:
    zd = _dicts.get(version)
    if zd is None:
        if version not in _CRC:
            raise ValueError(f"packed JSON of dictionary version {version}: written by a newer version of the CDS")
        with _lock:
            zd = _dicts.get(version)
            if zd is None:
                zd = resources.files("cds.core").joinpath(f"data/json-dict-{version}.txt").read_bytes()
                if zlib.crc32(zd) != _CRC[version]:
                    raise RuntimeError(f"cds/core/data/json-dict-{version}.txt was changed: stored data needs "
                                       "it byte for byte (add a new version instead)")
                _dicts[version] = zd
    return zd


def _compressor(version: int) -> "zlib._Compress":
    base = _primed.get(version)
    if base is None:
        # Priming hashes the whole dictionary (the larger part of one document's cost): do it once, copy after.
        base = zlib.compressobj(_LEVEL, zlib.DEFLATED, _PACK_WBITS, 8, zlib.Z_DEFAULT_STRATEGY, dictionary(version))
        _primed[version] = base
    return base.copy()


def is_packed(data: bytes) -> bool:
    return data[:1] == MARK


def pack(raw: bytes) -> bytes:
    """The packed form of compact JSON (as it is when that is not smaller, or already packed, or empty)."""
    if not raw or raw[:1] == MARK:
        return raw
    c = _compressor(_CURRENT)
    packed = b"".join((MARK, bytes((_CURRENT,)), c.compress(raw), c.flush()))
    return packed if len(packed) < len(raw) else raw


def unpack(data: bytes) -> bytes:
    """The JSON bytes of a stored document, packed or not."""
    if data[:1] != MARK:
        return data
    d = zlib.decompressobj(_WBITS, dictionary(data[1]))
    out = d.decompress(data[2:])
    if not d.eof:
        raise ValueError("truncated packed JSON")
    return out
