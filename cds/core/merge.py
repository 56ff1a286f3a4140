"""LTS `updateMode: MERGE`: a patch merged into the stored catalog before it is normalised again
(`cds.core.normalize`, which applies every bound to the result).
"""

from __future__ import annotations

from typing import Any

import orjson

from cds.core import errors as E
from cds.core.fields import pick
from cds.core.normalize_read import ITEM_CONTAINERS, OFFER_CONTAINERS, _reject

MAX_MERGE_DEPTH = 64


def merge_patch(target: Any, patch: Any, _depth: int = 0) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge recursively, `null` deletes a member, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    if _depth > MAX_MERGE_DEPTH:
        raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, f"merge patch nested deeper than {MAX_MERGE_DEPTH} levels",
                      "catalogs")
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v, _depth + 1)
    return out


def _merge_by_id(stored: list, patch: list) -> list:
    out = list(stored)
    where = {pick(x, "id"): i for i, x in enumerate(out) if isinstance(x, dict) and isinstance(pick(x, "id"), str)}
    for p in patch:
        pid = pick(p, "id") if isinstance(p, dict) else None
        if isinstance(pid, str) and pid in where:
            out[where[pid]] = merge_patch(out[where[pid]], p)
        elif isinstance(p, dict):
            where[pid] = len(out)
            out.append(merge_patch({}, p))
    return out


def merge_catalog(stored_raw: bytes, patch: dict) -> dict:
    """LTS `updateMode: MERGE` of `patch` into the stored catalog (its `CatalogMeta.raw`).

    The catalog header follows RFC 7396. Items/resources and offers merge by id: a patch entry whose id is
    stored is RFC-7396-merged into that entry, a new id is appended, stored entries absent from the patch are
    kept. Entries cannot be deleted by MERGE: publish them with `isActive: false`, or publish FULL. The patch
    is read in the stored catalog's container keys (`beckn:items` or `resources`) whichever it uses.
    Normalise the result with `normalize_catalog` (which also applies every bound).
    """
    stored = orjson.loads(stored_raw)
    if not isinstance(stored, dict) or not isinstance(patch, dict):
        raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, "a catalog must be an object", "catalogs")
    containers = (ITEM_CONTAINERS, OFFER_CONTAINERS)
    flat = {k for group in containers for k in group}
    merged = merge_patch({k: v for k, v in stored.items() if k not in flat},
                         {k: v for k, v in patch.items() if k not in flat})
    for group in containers:
        stored_key = next((k for k in group if k in stored), None)
        patch_key = next((k for k in group if isinstance(patch.get(k), list)), None)
        key = stored_key or patch_key
        if key is None:
            continue
        base = stored.get(stored_key) if isinstance(stored.get(stored_key), list) else []
        merged[key] = _merge_by_id(base, patch[patch_key]) if patch_key else base
    return merged
