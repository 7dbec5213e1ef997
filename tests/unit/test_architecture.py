"""The layout's dependencies, read from the imports (function-level ones included): no module
import cycle anywhere in the ledger's packages, and a domain that knows no database, broker or
adapter, so that the rules can be tested and replayed without any of them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "adapters", "projections", "replay")
# the pure domain and the service layer's ports: no I/O of their own
DOMAIN = (
    "ledger.rules",
    "ledger.aggregates",
    "ledger.months",
    "ledger.reference",
    "ledger.books",
    "ledger.values",
    "ledger.inputs",
    "ledger.service_layer",
)
OUTSIDE = ("adapters", "projections", "replay", "sqlite3", "psycopg", "kafka", "fastavro")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {m for m in imports(path) if m in known and m != name} for name, path in known.items()
    }


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_no_module_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_domain_imports_no_database_broker_or_adapter() -> None:
    known = modules()
    offending = {}
    for name, path in known.items():
        if not any(name == d or name.startswith(d + ".") for d in DOMAIN):
            continue
        bad = sorted(
            m for m in imports(path) if any(m == o or m.startswith(o + ".") for o in OUTSIDE)
        )
        if bad:
            offending[name] = bad
    assert offending == {}
    assert "ledger.rules" in known and "ledger.aggregates" in known
