"""The floors of the code base (README "Layout"): every module imports only from its own floor or the
floors below it, and no modules import each other in a loop. Read from the source with `ast`, lazy
imports inside functions and `TYPE_CHECKING` blocks included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cds", "indexer", "loadtests")
# Cross-cutting modules every floor may use; they themselves use only the domain core.
CROSS_CUTTING = ("cds.config", "cds.keys", "cds.metrics", "cds.logs", "cds.gcpolicy", "cds.redisconn",
                 "cds.redisstate", "cds.workpool")
THIRD_PARTY_IO = ("aiohttp", "redis", "elasticsearch", "prometheus_client", "socket", "asyncio")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in MODULES:
            return ".".join(parts[:i])
    return None


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(project modules, top-level third-party names) imported anywhere in `module`."""
    path = MODULES[module]
    tree = ast.parse(path.read_text("utf-8"))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    project, external = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            # `from pkg import sub` names the submodule, `from mod import name` the module itself
            targets = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            r = _resolve(t)
            if r is not None:
                if r != module:
                    project.add(r)
            elif t.split(".")[0] not in PACKAGES:
                external.add(t.split(".")[0])
    return project, external


GRAPH = {m: imports_of(m)[0] for m in MODULES}


def _in(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_layout_is_what_the_test_reads() -> None:
    # Guards the test itself: the floors exist and the reader finds imports in them.
    for floor in ("cds.core", "cds.trust", "cds.fanout", "cds.services", "cds.api", "cds.cli", "indexer.ingest"):
        assert floor in MODULES, floor
    assert "cds.core.query" in GRAPH["cds.core.planner"]
    assert "indexer.storage" in GRAPH["indexer.ingest.apply"]


def test_core_imports_nothing_of_the_project_outside_itself() -> None:
    bad = {m: sorted(d for d in deps if not _in(d, "cds.core"))
           for m, deps in GRAPH.items() if _in(m, "cds.core")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_core_does_no_io() -> None:
    bad = {m: sorted(imports_of(m)[1] & set(THIRD_PARTY_IO)) for m in MODULES if _in(m, "cds.core")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_cross_cutting_modules_use_only_the_core() -> None:
    bad = {m: sorted(d for d in GRAPH[m] if not _in(d, "cds.core", *CROSS_CUTTING)) for m in CROSS_CUTTING}
    assert {m: d for m, d in bad.items() if d} == {}


def test_indexer_stays_below_the_service() -> None:
    # The indexer may use the domain core, the cross-cutting modules and the signed outbound client
    # (on_catalog_publish); never trust's other parts, fan-out, services, the API or the CLI.
    allowed = ("cds.core", "indexer", "cds.trust.outbound", "cds.trust.signing", "cds.trust.netguard",
               *CROSS_CUTTING)
    bad = {m: sorted(d for d in deps if not _in(d, *allowed)) for m, deps in GRAPH.items() if _in(m, "indexer")}
    assert {m: d for m, d in bad.items() if d} == {}


@pytest.mark.parametrize("floor,above", [
    ("cds.trust", ("cds.fanout", "cds.services", "cds.api", "cds.cli", "cds.demo")),
    ("cds.fanout", ("cds.services", "cds.api", "cds.cli", "cds.demo")),
    ("cds.services", ("cds.api", "cds.cli", "cds.demo")),
    ("cds.api", ("cds.cli", "cds.demo")),
])
def test_no_floor_imports_a_higher_one(floor: str, above: tuple[str, ...]) -> None:
    bad = {m: sorted(d for d in deps if _in(d, *above)) for m, deps in GRAPH.items() if _in(m, floor)}
    assert {m: d for m, d in bad.items() if d} == {}


def test_only_the_cli_imports_the_api() -> None:
    bad = sorted(m for m, deps in GRAPH.items()
                 if not _in(m, "cds.api", "cds.cli") and any(_in(d, "cds.api") for d in deps))
    assert bad == []


def test_no_import_cycles() -> None:
    # Tarjan's strongly connected components over module imports.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_reader_catches_a_violation(tmp_path: Path) -> None:
    # A module of the core that imports the API would be caught: the same reader on a planted file.
    planted = ROOT / "cds" / "core" / "_planted_for_test.py"
    try:
        planted.write_text("def f():\n    from cds.api.app import create_app\n    return create_app\n")
        MODULES["cds.core._planted_for_test"] = planted
        assert "cds.api.app" in imports_of("cds.core._planted_for_test")[0]
    finally:
        MODULES.pop("cds.core._planted_for_test", None)
        planted.unlink(missing_ok=True)
