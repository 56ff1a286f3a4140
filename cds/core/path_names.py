"""Member names of filter paths: ONE vocabulary for both wire dialects (docs/decisions.md §W, §7).

`canon` strips the `beckn:`/`schema:`/`ev:` prefixes and maps LTS names (`resourceAttributes` ->
`itemAttributes`, `resources` -> `items`); `raw_keys` goes back, to the spellings a canonical member may have in
published JSON.
"""

from __future__ import annotations


_PREFIXES = ("beckn:", "schema:", "ev:")
_ALIASES = {
    "resourceAttributes": "itemAttributes", "attributes": "itemAttributes",
    "resources": "items", "resourceIds": "items", "currentType": "powerType",
}
_RAW_KEYS: dict[str, tuple[str, ...]] = {}


def canon(name: str) -> str:
    for p in _PREFIXES:
        if name.startswith(p) and len(name) > len(p):
            name = name[len(p):]
            break
    return _ALIASES.get(name, name)


def raw_keys(name: str) -> tuple[str, ...]:
    """Spellings a canonical member may have in published JSON (either dialect)."""
    keys = _RAW_KEYS.get(name)
    if keys is None:
        spellings = [name] + [alias for alias, c in _ALIASES.items() if c == name]
        keys = tuple(p + s for s in spellings for p in ("", *_PREFIXES))
        if len(_RAW_KEYS) < 4096:
            _RAW_KEYS[name] = keys
    return keys
