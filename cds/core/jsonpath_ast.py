"""The JSONPath filter AST: frozen nodes that `cds.core.jsonpath` parses an expression into and
`cds.core.filter_compiler` compiles into predicates (docs/decisions.md §S Matching).

Member names in `Name` and `Path` are canonical (`cds.core.path_names`), whichever dialect the expression used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Name:
    name: str                     # canonical member name


@dataclass(frozen=True, slots=True)
class Wild:
    pass


@dataclass(frozen=True, slots=True)
class Index:
    index: int


@dataclass(frozen=True, slots=True)
class Slice:
    start: int | None
    stop: int | None
    step: int | None


@dataclass(frozen=True, slots=True)
class Union:
    items: tuple[Any, ...]        # Name | Index


@dataclass(frozen=True, slots=True)
class Filter:
    expr: Any                     # RFC `[?(...)]`: keeps the children of a node that satisfy expr


@dataclass(frozen=True, slots=True)
class SelfFilter:
    expr: Any                     # SQL/JSON `? (...)`: keeps the nodes themselves (arrays unwrapped)


@dataclass(frozen=True, slots=True)
class Path:
    segments: tuple[Any, ...]     # relative to `@`


@dataclass(frozen=True, slots=True)
class Lit:
    value: Any


@dataclass(frozen=True, slots=True)
class ListLit:
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Func:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Cmp:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True, slots=True)
class In:
    left: Any
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Test:
    operand: Any                  # Path (existence) or Func


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Any


@dataclass(frozen=True, slots=True)
class RootQuery:
    """What the whole expression selects: items (or offers) of catalogs, each optionally filtered."""

    target: str                   # "items" | "offers"
    catalog_filter: Any = None
    filter: Any = None
