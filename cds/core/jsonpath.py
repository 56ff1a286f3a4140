"""The JSONPath filter parser: text -> the frozen AST of `cds.core.jsonpath_ast` (RFC 9535 filter selectors plus the
UBC/DEG/LTS quirks of docs/decisions.md §S Matching). `cds.core.filter_compiler` compiles the AST into predicates.

Parsing is a small hand-written recursive descent, bounded in length, node count and depth (docs/decisions.md
§24). Path segments are normalised into ONE vocabulary for both wire dialects (`cds.core.path_names`,
docs/decisions.md §7), and dotted names inside brackets
(`$['beckn:itemAttributes.chargingStation.serviceLocation.geo']`) are split on dots.
"""
from __future__ import annotations

import re
from typing import Any

from cds.core.errors import BecknError, jsonpath_error
from cds.core.jsonpath_ast import (
    And, Cmp, Filter, Func, In, Index, ListLit, Lit, Name, Not, Or, Path, RootQuery, SelfFilter, Slice, Test, Union, Wild,
)
from cds.core.path_names import canon

MAX_LENGTH = 4096
MAX_NODES = 256
MAX_DEPTH = 16
_MAX_EXACT = 2 ** 53 - 1      # RFC 9535 / I-JSON: integers beyond this are not exact everywhere

# --- parser ---------------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"[A-Za-z_@\u0080-\U0010ffff][A-Za-z0-9_:\-@\u0080-\U0010ffff]*")
_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_INT_RE = re.compile(r"-?\d+")
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = ("==", "!=", "<=", ">=", "<", ">")
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "/": "/", "\\": "\\", "'": "'", '"': '"'}
_FUNCS = {"length", "count", "value", "exists"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.nodes = 0
        self.depth = 0

    # helpers
    def fail(self, msg: str, pos: int | None = None) -> BecknError:
        pos = self.i if pos is None else pos
        near = self.s[pos:pos + 20]
        where = f" near {near!r}" if near else " at end of expression"
        return jsonpath_error(f"invalid JSONPath filter: {msg} at position {pos}{where}")

    def node(self, n: Any) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(f"expression too complex (more than {MAX_NODES} nodes)")
        return n

    def ws(self) -> None:
        s, i = self.s, self.i
        while i < len(s) and s[i] in " \t\r\n":
            i += 1
        self.i = i

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def eat(self, tok: str) -> bool:
        self.ws()
        if self.s.startswith(tok, self.i):
            self.i += len(tok)
            return True
        return False

    def expect(self, tok: str, what: str | None = None) -> None:
        if not self.eat(tok):
            raise self.fail(f"expected {what or repr(tok)}")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"expression nested too deeply (more than {MAX_DEPTH} levels)")

    # query
    def query(self) -> RootQuery:
        self.ws()
        if not self.eat("$"):
            raise self.fail("a filter must start with '$' (e.g. $[?(@.beckn:id == 'x')])")
        segs = self.segments()
        self.ws()
        if self.i != len(self.s):
            raise self.fail("unexpected text after the path")
        return _root(segs, self)

    def segments(self) -> list[Any]:
        segs: list[Any] = []
        while True:
            save = self.i
            self.ws()
            c = self.peek()
            if self.s.startswith("..", self.i):
                raise self.fail("descendant segments ('..') are not supported")
            if c == ".":
                self.i += 1
                if self.peek() == "*":
                    self.i += 1
                    segs.append(self.node(Wild()))
                    continue
                m = _NAME_RE.match(self.s, self.i)
                if not m:
                    raise self.fail("expected a member name after '.'")
                self.i = m.end()
                segs.append(self.node(Name(canon(m.group()))))
            elif c == "[":
                self.i += 1
                segs.extend(self.bracket())
            elif c == "?" and self._sql_filter_ahead():
                self.i += 1
                self.expect("(")
                self.enter()
                expr = self.logical()
                self.depth -= 1
                self.expect(")", "')' closing the filter")
                segs.append(self.node(SelfFilter(expr)))
            else:
                self.i = save
                return segs

    def _sql_filter_ahead(self) -> bool:
        j = self.i + 1
        while j < len(self.s) and self.s[j] in " \t\r\n":
            j += 1
        return j < len(self.s) and self.s[j] == "("

    def bracket(self) -> list[Any]:
        self.ws()
        if self.peek() == "?":
            self.i += 1
            self.enter()
            expr = self.logical()
            self.depth -= 1
            self.expect("]", "']' closing the filter selector")
            return [self.node(Filter(expr))]
        items: list[Any] = []
        while True:
            self.ws()
            c = self.peek()
            if c in ("'", '"'):
                items.append(("name", self.string()))
            elif c == "*":
                self.i += 1
                items.append(("wild", None))
            elif c == "-" or c.isdigit() or c == ":":
                items.append(("index", self.index_or_slice()))
            else:
                raise self.fail("expected a name, index, '*' or '?' selector")
            if self.eat(","):
                continue
            self.expect("]", "']'")
            break
        if len(items) == 1:
            kind, val = items[0]
            if kind == "wild":
                return [self.node(Wild())]
            if kind == "index":
                return [self.node(val)]
            parts = [p for p in val.split(".")] if "." in val else [val]
            if any(not p for p in parts):
                raise self.fail(f"empty member name in {val!r}")
            return [self.node(Name(canon(p))) for p in parts]
        if any(k == "wild" for k, _ in items) or any(isinstance(v, Slice) for _, v in items):
            raise self.fail("'*' and slices cannot be combined with other selectors")
        return [self.node(Union(tuple(Name(canon(v)) if k == "name" else v for k, v in items)))]

    def index_or_slice(self) -> Any:
        vals: list[int | None] = []
        for k in range(3):
            self.ws()
            m = _INT_RE.match(self.s, self.i)
            if m:
                self.i = m.end()
                v = int(m.group()) if len(m.group()) < 20 else _MAX_EXACT + 1
                if not -_MAX_EXACT <= v <= _MAX_EXACT:
                    raise self.fail("index out of range (RFC 9535: at most 2^53-1)")
                vals.append(v)
            else:
                vals.append(None)
            self.ws()
            if k < 2 and self.peek() == ":":
                self.i += 1
                continue
            break
        if len(vals) == 1:
            if vals[0] is None:
                raise self.fail("expected an index")
            return Index(vals[0])
        while len(vals) < 3:
            vals.append(None)
        if vals[2] == 0:
            raise self.fail("slice step must not be 0")
        return Slice(vals[0], vals[1], vals[2])

    def string(self) -> str:
        quote = self.s[self.i]
        self.i += 1
        out: list[str] = []
        s = self.s
        while True:
            if self.i >= len(s):
                raise self.fail("unterminated string")
            c = s[self.i]
            if c == quote:
                self.i += 1
                return "".join(out)
            if c == "\\":
                esc = s[self.i + 1:self.i + 2]
                if esc in _ESCAPES:
                    out.append(_ESCAPES[esc])
                    self.i += 2
                elif esc == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", s[self.i + 2:self.i + 6]):
                    out.append(chr(int(s[self.i + 2:self.i + 6], 16)))
                    self.i += 6
                else:
                    raise self.fail("invalid escape in string")
                continue
            out.append(c)
            self.i += 1

    # logical expressions
    def logical(self) -> Any:
        self.enter()
        items = [self.conj()]
        while self.eat("||"):
            items.append(self.conj())
        self.depth -= 1
        return items[0] if len(items) == 1 else self.node(Or(tuple(items)))

    def conj(self) -> Any:
        items = [self.unary()]
        while self.eat("&&"):
            items.append(self.unary())
        return items[0] if len(items) == 1 else self.node(And(tuple(items)))

    def unary(self) -> Any:
        self.ws()
        if self.peek() == "!" and not self.s.startswith("!=", self.i):
            self.i += 1
            self.enter()
            item = self.unary()
            self.depth -= 1
            return self.node(Not(item))
        return self.primary()

    def primary(self) -> Any:
        self.ws()
        if self.peek() == "(":
            self.i += 1
            expr = self.logical()
            self.expect(")", "')'")
            return expr
        start = self.i
        left = self.operand()
        self.ws()
        op = self.operator()
        if op:
            right = self.operand()
            if isinstance(left, ListLit) or isinstance(right, ListLit):
                raise self.fail("a list literal can only follow 'in'", start)
            return self.node(Cmp(op, left, right))
        m = _WORD_RE.match(self.s, self.i)
        if m and m.group() == "in":
            self.i = m.end()
            right = self.operand()
            if isinstance(right, ListLit):
                return self.node(In(left, right.values))
            if isinstance(left, Lit) and isinstance(right, Path):  # 'x' in @.list == any element is 'x'
                return self.node(Cmp("==", right, left))
            raise self.fail("'in' needs a list literal ([...]) on its right", start)
        if m and m.group() in ("like_regex", "starts", "nin", "contains", "subsetof", "anyof", "noneof"):
            raise self.fail(f"operator '{m.group()}' is not supported")
        if isinstance(left, Path) or (isinstance(left, Func) and left.name == "exists"):
            return self.node(Test(left))
        if isinstance(left, Func):
            raise self.fail(f"{left.name}() is not a test; compare its result", start)
        raise self.fail("expected a comparison operator (==, !=, <, <=, >, >=)", start)

    def operator(self) -> str | None:
        s, i = self.s, self.i
        for op in _OPS:
            if s.startswith(op, i):
                nxt = s[i + len(op):i + len(op) + 1]
                if nxt in ("=", "<", ">") or (op in ("<", ">") and nxt == "="):
                    raise self.fail("unknown operator")
                self.i += len(op)
                return op
        if s.startswith("=", i) or s.startswith("=~", i):
            raise self.fail("unknown operator '=' (use '==')")
        return None

    def operand(self) -> Any:
        self.ws()
        c = self.peek()
        if c == "@":
            self.i += 1
            return self.node(Path(tuple(self.segments())))
        if c == "$":
            raise self.fail("absolute paths ('$') inside a filter are not supported; use '@'")
        if c in ("'", '"'):
            return self.node(Lit(self.string()))
        if c == "-" or c.isdigit():
            m = _NUM_RE.match(self.s, self.i)
            if not m:
                raise self.fail("invalid number")
            self.i = m.end()
            text = m.group()
            try:
                num: float | int = float(text) if any(ch in text for ch in ".eE") else int(text)
                if isinstance(num, int) and not -_MAX_EXACT <= num <= _MAX_EXACT:
                    num = float(num)  # beyond I-JSON's exact integers: compared as the nearest double
            except (OverflowError, ValueError):
                raise self.fail("number out of range") from None
            if isinstance(num, float) and num != num or num in (float("inf"), float("-inf")):
                raise self.fail("number out of range")
            return self.node(Lit(num))
        if c == "[":
            self.i += 1
            vals: list[Any] = []
            if not self.eat("]"):
                while True:
                    self.ws()
                    v = None if self.peek() in ("[", "@", "$") else self.operand()
                    if not isinstance(v, Lit):
                        raise self.fail("list elements must be literals")
                    vals.append(v.value)
                    if self.eat(","):
                        continue
                    self.expect("]", "']' closing the list")
                    break
            return self.node(ListLit(tuple(vals)))
        m = _WORD_RE.match(self.s, self.i)
        if m:
            word = m.group()
            if word in ("true", "false", "null"):
                self.i = m.end()
                return self.node(Lit({"true": True, "false": False, "null": None}[word]))
            self.i = m.end()
            self.ws()
            if self.peek() != "(":
                raise self.fail(f"unexpected word {word!r} (member names need '@.' before them)", m.start())
            if word not in _FUNCS:
                raise self.fail(f"function {word}() is not supported", m.start())
            self.i += 1
            self.enter()
            args: list[Any] = []
            if not self.eat(")"):
                while True:
                    args.append(self.operand())
                    if self.eat(","):
                        continue
                    self.expect(")", "')' closing the function call")
                    break
            self.depth -= 1
            if len(args) != 1 or not isinstance(args[0], (Path, Lit)) or (
                    word in ("count", "exists", "value") and not isinstance(args[0], Path)):
                raise self.fail(f"{word}() takes exactly one {'path' if word != 'length' else 'argument'}",
                                m.start())
            return self.node(Func(word, tuple(args)))
        raise self.fail("expected a path (@...), a literal or a function")


def _root(segs: list[Any], p: _Parser) -> RootQuery:
    """Interpret the segments after `$`: the item array, or catalog-rooted items/offers."""
    i, target, cat_filter = 0, "items", None
    filters: list[Any] = []
    if segs and isinstance(segs[0], Name) and segs[0].name == "catalogs":
        i = 1
        while i < len(segs) and isinstance(segs[i], (Wild, Filter, SelfFilter)):
            if not isinstance(segs[i], Wild):
                cat_filter = segs[i].expr if cat_filter is None else And((cat_filter, segs[i].expr))
            i += 1
        if i < len(segs) and not (isinstance(segs[i], Name) and segs[i].name in ("items", "offers")):
            raise p.fail("a catalog-rooted filter must select '.items', '.resources' or '.offers'")
    if i < len(segs) and isinstance(segs[i], Name) and segs[i].name in ("items", "offers"):
        target = segs[i].name
        i += 1
    for seg in segs[i:]:
        if isinstance(seg, (Filter, SelfFilter)):
            filters.append(seg.expr)
        elif not isinstance(seg, Wild):
            raise p.fail("the expression must select whole items, e.g. $[?(...)]; "
                         f"unsupported segment {type(seg).__name__}", 0)
    flt = None if not filters else filters[0] if len(filters) == 1 else And(tuple(filters))
    return RootQuery(target, cat_filter, flt)


def parse(expression: str) -> RootQuery:
    if not isinstance(expression, str):
        raise jsonpath_error("filter expression must be a string")
    if len(expression) > MAX_LENGTH:
        raise jsonpath_error(f"filter expression too long ({len(expression)} > {MAX_LENGTH} characters)")
    return _Parser(expression.strip()).query()
