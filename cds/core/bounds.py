"""Published content bounds (docs/decisions.md §27): what one item may weigh before it is served to every app.

A string (or object key) of an item or offer is at most `max_item_string_bytes` (UTF-8), an item's JSON with
the offers that apply to it at most `max_item_bytes`, and the catalog header (served with every item of the
catalog) at most `max_item_bytes` too. Coordinates are checked where the location is read
(`cds.core.normalize`). An item or offer over a bound is rejected with its reason; the rest of the catalog is
indexed.
"""

from __future__ import annotations

from typing import Any, Protocol

ITEM_REJECTED = "INVALID_ITEM"       # the code of the on_catalog_publish notice (UBC/PSN example wording)
OFFER_REJECTED = "INVALID_OFFER"
REJECTION_CODES = (ITEM_REJECTED, OFFER_REJECTED)
WALK_BUDGET = 20_000                 # values looked at to name the over-long string of an oversized object


class BoundsConfig(Protocol):
    max_item_string_bytes: int
    max_item_bytes: int


class OverBound(Exception):
    """An item, offer or header over a bound; `reason` says which and by how much."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _utf8_len(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))


def long_string(value: Any, limit: int, budget: int = WALK_BUDGET) -> tuple[str, int] | None:
    """(path, bytes) of the first string or key longer than `limit` bytes, or None (also when the walk ran
    out of `budget` values). Iterative: nesting depth costs no stack."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack and budget > 0:
        path, v = stack.pop()
        budget -= 1
        if isinstance(v, str):
            if len(v) > limit // 4 and _utf8_len(v) > limit:
                return path or "(value)", _utf8_len(v)
        elif isinstance(v, dict):
            for k, x in v.items():
                sub = f"{path}.{k}" if path else str(k)
                if isinstance(k, str) and len(k) > limit // 4 and _utf8_len(k) > limit:
                    return f"{path or '(object)'} key", _utf8_len(k)
                stack.append((sub, x))
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", x) for i, x in enumerate(v))
    return None


def check_json(obj: Any, raw_len: int, cfg: BoundsConfig, what: str) -> None:
    """OverBound when `obj` (serialised in `raw_len` bytes) holds an over-long string or is too large."""
    if raw_len > cfg.max_item_string_bytes:
        found = long_string(obj, cfg.max_item_string_bytes)
        if found is not None:
            path, size = found
            raise OverBound(f"{what}: the string at {path[:200]} is {size} bytes, over the limit of "
                            f"{cfg.max_item_string_bytes} (CDS_MAX_ITEM_STRING_BYTES)")
    if raw_len > cfg.max_item_bytes:
        raise OverBound(f"{what}: its JSON is {raw_len} bytes, over the limit of {cfg.max_item_bytes} "
                        f"(CDS_MAX_ITEM_BYTES)")


def check_item_total(item_len: int, offer_lens: list[int], cfg: BoundsConfig, what: str) -> None:
    total = item_len + sum(offer_lens)
    if total > cfg.max_item_bytes:
        raise OverBound(f"{what}: its JSON with its {len(offer_lens)} offer(s) is {total} bytes, over the limit of "
                        f"{cfg.max_item_bytes} (CDS_MAX_ITEM_BYTES)")


def out_of_range(lon: float, lat: float) -> bool:
    return not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0)
