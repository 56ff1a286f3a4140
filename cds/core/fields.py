"""Reading a field of a catalog, item or offer in either Beckn v2 dialect: `beckn:id`, `schema:name` and the plain
`id` are one field (docs/decisions.md §P: `read` with spellings taken once is the normaliser's hot read). Used by the
normaliser (`cds.core.normalize`) and the dialect converters (`cds.core.dialects`).
"""

from __future__ import annotations

from typing import Any

from cds.core.models import DIALECT_A, DIALECT_B

_PREFIXES = ("beckn:", "schema:")

Json = dict[str, Any]


def plain(key: str) -> str:
    """`beckn:id` -> `id`, `schema:name` -> `name`; other keys unchanged."""
    for p in _PREFIXES:
        if key.startswith(p):
            return key[len(p):]
    return key


_SPELLINGS: dict[str, tuple[str, str, str]] = {}    # name -> its three spellings (names come from code only)


def spelled(name: str) -> tuple[str, str, str]:
    """The three spellings of field `name` in the order `pick` reads them."""
    keys = _SPELLINGS.get(name)
    if keys is None:
        keys = _SPELLINGS[name] = (f"beckn:{name}", f"schema:{name}", name)
    return keys


def read(obj: dict, keys: tuple[str, str, str]) -> Any:
    """`pick(obj, name)` for a dict and the spellings of one name (`spelled`, taken once at import): the
    normaliser's hot reads, about three times cheaper than `pick` (docs/decisions.md §P)."""
    v = obj.get(keys[0])
    if v is None:
        v = obj.get(keys[1])
        if v is None:
            return obj.get(keys[2])
    return v


def pick(obj: Any, *names: str) -> Any:
    """The first present, non-None value among `beckn:<n>`, `schema:<n>` and `<n>` for each name."""
    if not isinstance(obj, dict):
        return None
    for n in names:
        v = read(obj, _SPELLINGS.get(n) or spelled(n))
        if v is not None:
            return v
    return None


def is_a(obj: Any) -> bool:
    """Does a catalog/item/offer use dialect-A (prefixed JSON-LD) keys?"""
    if not isinstance(obj, dict):
        return False
    t = obj.get("@type")
    if isinstance(t, str) and t.startswith("beckn:"):
        return True
    return any(k.startswith("beckn:") for k in obj)


def catalog_dialect(catalog: Any, default: str = DIALECT_A) -> str:
    """A for prefixed catalogs, B for plain-key ones (`id`, `resources`, `descriptor` ...), else `default`."""
    if is_a(catalog):
        return DIALECT_A
    if isinstance(catalog, dict) and any(k in catalog for k in ("id", "resources", "offers", "descriptor", "provider")):
        return DIALECT_B
    return default


def as_list(v: Any) -> list:
    """A list as is, None as [], anything else as a one-element list (fields that take one or many)."""
    if isinstance(v, list):
        return v
    return [] if v is None else [v]


# (field, the spellings of its names in the order `pick` reads them): legacy `start`/`end` are dates.
_PERIOD_FIELDS = tuple((names[0], tuple(map(spelled, names)))
                       for names in (("startDate", "start"), ("endDate", "end"), ("startTime",), ("endTime",)))


def period_values(p: Any) -> Json:
    """The dates and times of a TimePeriod in either dialect (legacy `start`/`end` read as dates)."""
    vals: Json = {}
    if not isinstance(p, dict):
        return vals
    for name, spellings in _PERIOD_FIELDS:
        for keys in spellings:     # pick(p, *names)
            v = read(p, keys)
            if v is not None:
                if isinstance(v, str) and v:
                    vals[name] = v
                break
    return vals

