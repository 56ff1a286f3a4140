"""RFC 7240 `Prefer` headers: does the client ask for `return=representation`?

A `POST /discover` carrying it is answered like the GET: 200 with the whole on_discover body
(docs/decisions.md §W), for clients such as browsers and `fetch` that cannot send a GET body.
"""

from __future__ import annotations

import re
from typing import Iterable

REPRESENTATION = "return=representation"
MAX_PREFER_CHARS = 1024        # an honest header is a few dozen characters

_QUOTED = r'"(?:[^"\\]|\\.)*"'
# Comma-separated preferences (commas inside quoted strings do not separate) ...
_ITEM = re.compile(rf'(?:[^,"]|{_QUOTED})+')
# ... each `token [= (token | quoted-string)]`, then `;parameters`, which we ignore.
_HEAD = re.compile(rf'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*({_QUOTED}|[^\s;"]*))?\s*(?:;|$)')


def preferences(values: Iterable[str]) -> dict[str, str]:
    """Preference name (lower case) -> value (unquoted, "" when absent). RFC 7240 §2: only the first
    instance of a preference counts; a malformed one is skipped like an unknown one."""
    out: dict[str, str] = {}
    budget = MAX_PREFER_CHARS
    for value in values:
        budget -= len(value)
        if budget < 0:
            break
        for item in _ITEM.findall(value):
            m = _HEAD.match(item)
            if m is None:
                continue
            word = m.group(2) or ""
            if word.startswith('"'):
                word = re.sub(r"\\(.)", r"\1", word[1:-1])
            out.setdefault(m.group(1).lower(), word)
    return out


def wants_representation(values: Iterable[str]) -> bool:
    return preferences(values).get("return", "").lower() == "representation"
