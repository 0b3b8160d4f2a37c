"""The project's module-level import graph, read from the source (ast), and the rules it must obey.

Used by ``test_import_graph.py``; run it to print the graph's problems (the closing note of issue 14
shows this output)::

    python -m tests.core.import_graph            # cycles, rule violations, upward edges, mid-module imports
    python -m tests.core.import_graph --edges    # also every edge (``~`` = function-local import)

The runtime's layers (:data:`RUNTIME_LAYERS`, lowest first) are its folders: ``backends/`` <
``contract/`` < ``formats/`` < the applications at the package root (``report/`` and ``selection/``
with them). An *upward edge* is a module importing a higher layer than its own; function-local imports
count too (lazy imports of optional libraries are fine, a lazy import up a layer is not). A
*mid-module import* is a module-level import statement after the module's top import block (after a
definition or other code): it hides a dependency and runs in an order nobody reads.

Why parse instead of import: importing every module would need torch, onnx, openvino and tensorrt at
once, and would only see the imports one run happens to execute; the ast sees every ``import``
statement, including those inside functions (marked ``local``: they run on first call, so a cycle
through them does not break import, but it still ties two layers together). Imports by string
(``importlib.import_module``, the registries' ``"module:attr"`` entries, ``cmkd_edge._lazy``) are not
edges: they are how the lazy tables defer a dependency on purpose.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Source folder -> the import name it is installed as (pyproject's package-dir).
ROOTS = {"cmkd_edge": "cmkd_edge", "export": "cmkd_edge.export", "runtime": "cmkd_edge.runtime"}
#: Scripts that use the library from outside (checked against the rules, never part of a cycle).
CLIENTS = ("benchmarks",)

#: The stdlib-only core every layer may import (design card; docs/architecture.md).
CORE = ("cmkd_edge", "cmkd_edge.errors", "cmkd_edge._registry", "cmkd_edge._lazy", "cmkd_edge.fsutil")

#: The runtime's layers, lowest first: (name, package prefix); a runtime module in none of the prefixes is
#: an application (the package root, ``report/``, ``selection/``). A layer may import its own and lower
#: layers. The package ``cmkd_edge.runtime`` itself is the top: it re-exports the applications' API.
RUNTIME_LAYERS = (
    ("backends", "cmkd_edge.runtime.backends"),
    ("contract", "cmkd_edge.runtime.contract"),
    ("formats", "cmkd_edge.runtime.formats"),
)
APPS = "apps"


@dataclass(frozen=True)
class Edge:
    """``src`` imports ``dst`` at ``path:line``; ``local`` = inside a function (runs on first call)."""

    src: str
    dst: str
    local: bool
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.src} {'~>' if self.local else '->'} {self.dst}  ({self.path}:{self.line})"


def module_files(repo: Path = REPO) -> dict[str, Path]:
    """Every project module by import name (``pkg/__init__.py`` is ``pkg``)."""
    out: dict[str, Path] = {}
    for folder, name in ROOTS.items():
        base = repo / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("").parts
            parts = [p for p in rel if p != "__init__"] if rel[-1] == "__init__" else list(rel)
            if any(not p.isidentifier() for p in parts):
                continue  # why: e.g. an egg-info or a stray "a-b.py" is not importable
            out[".".join([name, *parts])] = path
    return out


def packages(modules: dict[str, Path]) -> set[str]:
    """The module names that are packages."""
    return {m for m, p in modules.items() if p.name == "__init__.py"}


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Import statements with whether they sit inside a function (class bodies run at import time).

    ``if TYPE_CHECKING:`` blocks are skipped: they never run, so they cannot form a cycle.
    """

    def walk(node: ast.AST, local: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from (x for c in child.orelse for x in walk(ast.Module([c], []), local))
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, local
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from walk(child, inner)

    yield from walk(tree, False)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, package: str, known: set[str]) -> Iterator[str]:
    """Project modules one import statement loads: ``from a import b`` is ``a.b`` when that is a module."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base_parts = package.split(".")
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]  # `import a.b.X` where X is an attribute: the module is a.b
        if name:
            yield name


def build_graph(repo: Path = REPO) -> tuple[dict[str, Path], list[Edge]]:
    """(modules, edges) of the project, plus edges from the client scripts (``benchmarks/``)."""
    modules = module_files(repo)
    known = set(modules)
    sources = [(m, p, _package_of(m, p)) for m, p in modules.items()]
    for folder in CLIENTS:
        for p in sorted((repo / folder).rglob("*.py")):
            sources.append((f"{folder}/{p.relative_to(repo / folder)}", p, ""))
    edges: set[Edge] = set()
    for mod, path, package in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, local in _imports(tree):
            for dst in _targets(node, package, known):
                if dst != mod:
                    edges.add(Edge(mod, dst, local, str(path.relative_to(repo)), node.lineno))
    return modules, sorted(edges, key=lambda e: (e.src, e.dst, e.local, e.line))


def cycles(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted; sorted list."""
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth = longest import chain: a few dozen
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def layer(module: str) -> str:
    """The package a module belongs to for layering: ``cmkd_edge.distill.losses.kd`` -> ``cmkd_edge.distill``.

    Core modules stay themselves; client scripts are the layer ``benchmarks``.
    """
    if "/" in module:
        return module.split("/", 1)[0]
    parts = module.split(".")
    return module if module in CORE else ".".join(parts[:2])


def _in(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


#: The packages a root-level module of ``cmkd_edge`` (``checkpoint.py``; not a package) may import besides
#: the core and the contract's records (a checkpoint's metadata is one): it sits below the stage packages,
#: so e.g. a root ``diagnostics.py`` reaching into distill is a module living in the wrong room.
ROOT_LEVEL_MAY_IMPORT = ("cmkd_edge.models", "cmkd_edge.data", "cmkd_edge.runtime.contract")


def rule_violations(edges: Iterable[Edge], packages: Iterable[str]) -> list[tuple[str, Edge]]:
    """Edges that break the design card's direction of imports, each with the rule's name.

    - runtime: imports only the runtime and the stdlib-only core (never the trainer, export, CLI);
    - export: never the distillation code, the MFH experiments or the CLI;
    - core: the stdlib-only core imports only the core;
    - root level: a root module (not a package) imports only the core, other root modules, models, data;
    - cli: nothing but the CLI imports the CLI (benchmarks included: they use the library).

    Args:
        packages: the module names that are packages (:func:`packages`), so a package such as
            ``cmkd_edge.distill`` is not taken for a root-level module.
    """
    not_root = set(packages) | set(CORE)

    def root_level(m: str) -> bool:
        return m.startswith("cmkd_edge.") and m.count(".") == 1 and m not in not_root

    out: list[tuple[str, Edge]] = []
    for e in edges:
        if root_level(e.src) and not (e.dst in CORE or root_level(e.dst) or _in(e.dst, ROOT_LEVEL_MAY_IMPORT)):
            out.append(("a root-level module imports only the core, models and data", e))
        if _in(e.src, ["cmkd_edge.runtime"]) and not _in(e.dst, ["cmkd_edge.runtime"]) and e.dst not in CORE:
            out.append(("runtime imports only the runtime and the core", e))
        # one exception: the int8-qat rung fine-tunes with the trainer's own KD loss (one KD, not two)
        if (_in(e.src, ["cmkd_edge.export"]) and _in(e.dst, ["cmkd_edge.distill", "cmkd_edge.mfh", "cmkd_edge.cli"])
                and not _in(e.dst, ["cmkd_edge.distill.losses"])):
            out.append(("export imports no distill (but its losses), mfh or cli", e))
        if e.src in CORE and e.dst not in CORE:
            out.append(("the core imports only the core", e))
        if _in(e.dst, ["cmkd_edge.cli"]) and not _in(e.src, ["cmkd_edge.cli"]):
            out.append(("only the CLI imports the CLI", e))
    return out


def runtime_layer(module: str) -> str | None:
    """The runtime layer a module belongs to (:data:`RUNTIME_LAYERS`, else ``apps``); None outside the runtime."""
    if not _in(module, ["cmkd_edge.runtime"]):
        return None
    return next((name for name, prefix in RUNTIME_LAYERS if _in(module, [prefix])), APPS)


def layer_rank(name: str) -> int:
    """0 for the lowest runtime layer, up to the applications."""
    return [n for n, _ in RUNTIME_LAYERS].index(name) if name != APPS else len(RUNTIME_LAYERS)


def upward_edges(edges: Iterable[Edge]) -> list[Edge]:
    """Runtime edges from a lower layer to a higher one, top-level or function-local."""
    out = []
    for e in edges:
        a, b = runtime_layer(e.src), runtime_layer(e.dst)
        if a is not None and b is not None and layer_rank(a) < layer_rank(b):
            out.append(e)
    return out


@dataclass(frozen=True)
class MidImport:
    """A module-level import at ``path:line`` that comes after the module's top import block."""

    path: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def _is_head(node: ast.stmt) -> bool:
    """A statement that may sit in a module's top import block: the docstring, imports, an ``if
    TYPE_CHECKING:`` block and a ``try:`` of imports (an optional dependency)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
        return True  # the docstring
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        return True
    if isinstance(node, ast.Try):
        return all(isinstance(s, ast.Import | ast.ImportFrom) for s in node.body)
    return False


def _module_level_imports(nodes: Iterable[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run at import time inside ``nodes`` (nested blocks and class bodies too, not functions)."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _module_level_imports(c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt))


def mid_module_imports(repo: Path = REPO) -> list[MidImport]:
    """Module-level imports after the top import block, in every project module (not the client scripts,
    which may set ``sys.path`` before they import)."""
    out = []
    for path in module_files(repo).values():
        text = path.read_text(encoding="utf-8")
        body = ast.parse(text, filename=str(path)).body
        head = next((i for i, node in enumerate(body) if not _is_head(node)), len(body))
        for node in _module_level_imports(body[head:]):
            line = text.splitlines()[node.lineno - 1].strip()
            out.append(MidImport(str(path.relative_to(repo)), node.lineno, line))
    return sorted(out, key=lambda m: (m.path, m.line))


def report(show_edges: bool = False, repo: Path = REPO) -> str:
    """The text the script prints: module cycles (top-level, then with local imports), package-level
    cycles, rule violations, the runtime's upward edges and mid-module imports."""
    modules, edges = build_graph(repo)
    project = [e for e in edges if "/" not in e.src]
    top = [(e.src, e.dst) for e in project if not e.local]
    every = [(e.src, e.dst) for e in project]
    layers = {(layer(a), layer(b)) for a, b in every if layer(a) != layer(b)}
    lines = [f"{len(modules)} modules, {len(project)} project edges "
             f"({sum(e.local for e in project)} function-local), {len(edges) - len(project)} from benchmarks/"]
    for title, found in (
        ("module cycles, top-level imports", cycles(modules, top)),
        ("module cycles, counting function-local imports", cycles(modules, every)),
        ("package cycles (cmkd_edge.<package>), counting function-local imports",
         cycles({layer(m) for m in modules}, layers)),
    ):
        lines.append(f"{title}: {len(found)}")
        lines += ["  " + " <-> ".join(c) for c in found]
    bad = rule_violations(edges, packages(modules))
    lines.append(f"rule violations: {len(bad)}")
    lines += [f"  [{rule}] {e}" for rule, e in bad]
    order = " < ".join([*(n for n, _ in RUNTIME_LAYERS), APPS])
    up = upward_edges(edges)
    lines.append(f"runtime layers ({order}): upward edges, counting function-local imports: {len(up)}")
    lines += [f"  [{runtime_layer(e.src)} -> {runtime_layer(e.dst)}] {e}" for e in up]
    mid = mid_module_imports(repo)
    lines.append(f"mid-module imports (module-level, after the top import block): {len(mid)}")
    lines += [f"  {m}" for m in mid]
    if show_edges:
        lines.append("edges (-> top-level, ~> function-local):")
        lines += [f"  {e}" for e in edges]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print :func:`report`."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--edges", action="store_true", help="also list every edge")
    ap.add_argument("--repo", type=Path, default=REPO, help="a checkout to read (default: this one)")
    args = ap.parse_args(argv)
    print(report(args.edges, args.repo))


if __name__ == "__main__":
    main()
