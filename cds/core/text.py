"""Text analysis for `text_search`: one analyzer, in Python, for both storage backends (docs/decisions.md §25).

A word is lower-cased, ASCII-folded (accents dropped from Latin letters; other scripts kept as they are)
and stemmed with the Snowball English stemmer, so "Charging Stations" and "charging station" meet in the
terms `charg` and `station`. Items store the terms of their text fields (`document_terms`, every word kept);
a query keeps only the words that say what to look for (`query_terms`: English stop words and the filler
of a spoken request such as "give me all … near me" dropped). An item matches when it has every query term;
a query left with no term has no text criterion.

Changing the stemmer or the folding changes stored terms: re-index (the Elasticsearch mapping version and
`cds index init` carry such a change). The word lists apply to queries only, so they can change freely.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Iterable

import snowballstemmer

MAX_QUERY_TERMS = 16
MAX_TERM_CHARS = 64                   # longer words are cut, the same way in documents and in queries
MAX_DOCUMENT_TERMS = 512

# The Snowball project's English stop word list.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
herself it its itself they them their theirs themselves what which who whom this that these those am is are
was were be been being have has had having do does did doing would should could ought a an the and but if or
because as until while of at by for with about against between into through during before after above below
to from up down in out on off over under again further then once here there when where why how all any both
each few more most other some such no nor not only own same so than too very s t can will just don now
""".split())
# What a driver or an app adds to a request without describing a charger ("show me chargers near me").
FILLER_WORDS = frozenset("""
give show find list search get want need looking look please any near nearby around close closest nearest
available anything everything something me us
""".split())

_WORD = re.compile(r"\w+")
# Latin letters without a canonical decomposition.
_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "Æ": "ae", "ø": "o", "Ø": "o", "đ": "d", "Đ": "d", "ł": "l",
                       "Ł": "l", "œ": "oe", "Œ": "oe", "þ": "th", "ı": "i"})
_stemmer = snowballstemmer.stemmer("english")


def fold(text: str) -> str:
    """Lower-case, with the accents of Latin letters dropped ("Café" -> "cafe"). Combining marks of other
    scripts (Devanagari vowel signs ...) belong to their letters and stay."""
    if text.isascii():     # most text: no letter of _FOLD, and casefold is lower (translate is the dear part)
        return text.lower()
    text = text.translate(_FOLD).casefold()
    if text.isascii():
        return text
    out: list[str] = []
    latin = False
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch):
            if not latin:
                out.append(ch)
            continue
        latin = ch < "\u0250"
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    # Words repeat across a catalog (and a network): the cache makes indexing cost one stem per distinct word.
    return _stemmer.stemWord(word)[:MAX_TERM_CHARS] if word.isascii() else word[:MAX_TERM_CHARS]


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


@functools.lru_cache(maxsize=8192)
def _part_terms(part: str) -> frozenset[str]:
    # The same parts recur across a catalog's items (provider, address, amenities): each analysed once.
    return frozenset(map(_stem, words(part)))


def document_terms(parts: Iterable[str | None]) -> list[str]:
    """The sorted distinct terms of an item's text fields (every word, stop words included)."""
    return sorted(set().union(*map(_part_terms, filter(None, parts))))[:MAX_DOCUMENT_TERMS]


def query_terms(text: str | None) -> tuple[str, ...]:
    """The distinct terms every matching item must have, in query order; () = no text criterion."""
    out: list[str] = []
    for w in words(text or ""):
        if w in STOP_WORDS or w in FILLER_WORDS:
            continue
        term = _stem(w)
        if term not in out:
            out.append(term)
            if len(out) >= MAX_QUERY_TERMS:
                break
    return tuple(out)


def has_terms(item_terms: list[str], query: tuple[str, ...]) -> bool:
    return all(t in item_terms for t in query)
