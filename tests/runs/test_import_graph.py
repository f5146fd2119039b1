"""The module import graph of ``stemlab`` has no cycles.

Built with ``ast`` from every module's source (nothing is imported):
relative imports are resolved, ``from pkg import name`` is an edge to the
submodule ``pkg.name`` when there is one (else to ``pkg``), and an import of
a module outside ``stemlab`` is no edge. Imports under ``if TYPE_CHECKING:``
never run and are left out. "Top-level" means what runs when the module is
imported (the module body, with its ``if``/``try``/``with``/loop and class
bodies); imports inside functions are *deferred*.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import stemlab

ROOT = Path(stemlab.__file__).resolve().parent

#: Cycles through imports at module level: none left. (A cycle found in files
#: that other engineers own would be listed here, with a comment, until fixed.)
KNOWN_TOP_LEVEL_CYCLES: list[frozenset[str]] = []

#: Cycles that close only through imports deferred into functions (they
#: cannot fail at import time, but tie the modules together); outside
#: stemlab/runs, owned by others — reported, not fixed here:
KNOWN_DEFERRED_CYCLES = [
    frozenset({"stemlab._secrets", "stemlab.errors", "stemlab.services"}),
    frozenset({"stemlab.providers", "stemlab.providers.ref"}),
    frozenset({"stemlab.metrics.aggregate", "stemlab.reports.stats"}),
    frozenset({"stemlab.metrics", "stemlab.metrics.evaluation"}),
]


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name → (file, is a package) for every module of stemlab."""
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts.pop()
        out[".".join(parts)] = (f, is_pkg)
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(body: list[ast.stmt], deferred: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements ``body`` runs (with ``deferred``: also those in functions)."""
    out: list[ast.Import | ast.ImportFrom] = []
    for n in body:
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            out.append(n)
        elif isinstance(n, ast.If):
            out += _imports(n.orelse, deferred)
            if not _is_type_checking(n):
                out += _imports(n.body, deferred)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if deferred:
                out += _imports(n.body, deferred)
        else:  # try/with/for/while/class …: their bodies run at import
            for field in ("body", "orelse", "finalbody", "handlers"):
                for sub in getattr(n, field, []) or []:
                    out += _imports(sub.body if isinstance(sub, ast.ExceptHandler) else [sub], deferred)
    return out


def _target(mods: dict[str, tuple[Path, bool]], name: str) -> str | None:
    """The stemlab module an import of ``name`` runs (its nearest module prefix)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(deferred: bool = False) -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, (f, is_pkg) in mods.items():
        pkg = name if is_pkg else name.rpartition(".")[0]
        deps: set[str] = set()
        with warnings.catch_warnings():  # a module's own invalid escapes are not this test's business
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(f.read_text(encoding="utf-8"))
        for n in _imports(tree.body, deferred):
            if isinstance(n, ast.Import):
                deps.update(t for a in n.names if (t := _target(mods, a.name)))
                continue
            if n.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)]
                src = ".".join(base + ([n.module] if n.module else []))
            else:
                src = n.module or ""
            if src.split(".")[0] != "stemlab":
                continue
            for a in n.names:
                sub = f"{src}.{a.name}"
                t = sub if sub in mods else _target(mods, src)
                if t:
                    deps.add(t)
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def test_the_graph_sees_the_imports() -> None:
    g = import_graph()
    assert len(g) > 50
    assert {"stemlab.runs.planning", "stemlab.runs.execution", "stemlab.runs.results"} <= g["stemlab.runs.runner"]
    assert "stemlab.runs.kinds" in g["stemlab.runs.planning"]  # relative, from-import of names
    assert "stemlab.runs.runner" not in g["stemlab.runs.results"]
    # TYPE_CHECKING imports are no edges; deferred ones only when asked for
    assert "stemlab.runs.jobs" not in g["stemlab.runs.kinds"]
    assert "stemlab.metrics.scoring" not in g["stemlab.runs.runner"]
    assert "stemlab.metrics.scoring" in import_graph(deferred=True)["stemlab.runs.runner"]


def test_cycles_are_found() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(g) == [frozenset("abc")]


def test_no_import_cycles_in_stemlab() -> None:
    found = cycles(import_graph())
    new = [sorted(c) for c in found if c not in KNOWN_TOP_LEVEL_CYCLES]
    assert not new, f"import cycles: {new}"


def test_no_cycle_through_runs_even_with_deferred_imports() -> None:
    """Nothing in stemlab/runs imports back, not even from inside a function
    (results.py ↔ runner.py did)."""
    found = cycles(import_graph(deferred=True))
    runs = [sorted(c) for c in found if any(m.startswith("stemlab.runs") for m in c)]
    assert not runs, f"cycles through stemlab.runs: {runs}"
    new = [sorted(c) for c in found if c not in KNOWN_DEFERRED_CYCLES]
    assert not new, f"new deferred-import cycles: {new}"
