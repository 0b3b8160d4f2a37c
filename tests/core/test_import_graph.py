"""Imports point one way (design card): no cycles, runtime -> core only, export -> no distill/mfh/cli,
the runtime's layers (backends < contract < formats < applications) import down only, and no import
hides below a module's top block.

The graph comes from the source (``import_graph.py`` beside this file; ``python -m tests.core.import_graph``
prints it), so a back-edge fails here before it breaks a device install or an import order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from import_graph import (
    Edge,
    build_graph,
    cycles,
    layer,
    mid_module_imports,
    packages,
    report,
    rule_violations,
    runtime_layer,
    upward_edges,
)


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Edge]]:
    return build_graph()


def test_graph_reads_every_layer_and_marks_local_imports(graph) -> None:
    """Guard against a vacuous pass: the parser sees the three source roots, relative and local imports."""
    modules, edges = graph
    assert {"cmkd_edge.distill.trainer", "cmkd_edge.export.quantize.gate", "cmkd_edge.runtime.metrics"} <= set(modules)
    pairs = {(e.src, e.dst, e.local) for e in edges}
    assert ("cmkd_edge.export.quantize.gate", "cmkd_edge.runtime.metrics", False) in pairs
    assert ("cmkd_edge.cli.methods", "cmkd_edge.distill.diagnostics", True) in pairs  # inside the command body
    assert ("cmkd_edge.mfh.experiments", "cmkd_edge.distill.losses.kd", False) in pairs
    assert len(edges) > 200


def test_no_module_cycles_top_level(graph) -> None:
    modules, edges = graph
    found = cycles(modules, [(e.src, e.dst) for e in edges if not e.local and "/" not in e.src])
    assert found == []


def test_no_module_cycles_counting_function_local_imports(graph) -> None:
    """A cycle through a local import does not break importing, but it ties two modules both ways."""
    modules, edges = graph
    found = cycles(modules, [(e.src, e.dst) for e in edges if "/" not in e.src])
    assert found == []


def test_no_package_cycles(graph) -> None:
    """Between cmkd_edge's packages (data, models, distill, mfh, cli, export, runtime, the core) too."""
    modules, edges = graph
    pairs = {(layer(e.src), layer(e.dst)) for e in edges if "/" not in e.src and layer(e.src) != layer(e.dst)}
    assert cycles({layer(m) for m in modules}, pairs) == []


def test_import_rules(graph) -> None:
    """runtime -> runtime + core only; export -> no distill/mfh/cli; core -> core; nobody -> cli; root modules low."""
    modules, edges = graph
    bad = [f"[{rule}] {e}" for rule, e in rule_violations(edges, packages(modules))]
    assert bad == []


def test_runtime_layers_import_down_only(graph) -> None:
    """backends < contract < formats < applications, function-local imports included; and each layer is
    really there (a renamed folder would otherwise make every module an application)."""
    modules, edges = graph
    assert [str(e) for e in upward_edges(edges)] == []
    seen = {runtime_layer(m) for m in modules}
    assert {"backends", "contract", "formats", "apps"} <= seen
    assert runtime_layer("cmkd_edge.runtime.contract.manifest") == "contract"
    assert runtime_layer("cmkd_edge.runtime.selection.choose") == "apps"
    pairs = {(runtime_layer(e.src), runtime_layer(e.dst)) for e in edges}
    assert {("contract", "backends"), ("apps", "contract"), ("apps", "formats")} <= pairs


def test_no_mid_module_imports() -> None:
    """Every module-level import sits in the module's top block (function-local ones are lazy on purpose)."""
    assert [str(m) for m in mid_module_imports()] == []


def test_checker_finds_cycles_and_back_edges(tmp_path: Path) -> None:
    """The checker itself, on a made-up tree: a relative-import cycle, a local one, forbidden edges."""
    files = {
        "cmkd_edge/__init__.py": "",
        "cmkd_edge/errors.py": "",
        "cmkd_edge/diag.py": "from cmkd_edge.distill import a\n",
        "cmkd_edge/distill/__init__.py": "",
        "cmkd_edge/distill/a.py": "from . import b\n",
        "cmkd_edge/distill/b.py": "def f():\n    from cmkd_edge.distill.a import x\n",
        "runtime/__init__.py": "from cmkd_edge.errors import CmkdError\n",
        "runtime/m.py": "import numpy\nfrom cmkd_edge.distill import a\n",
        "export/__init__.py": "",
        "export/g.py": "from cmkd_edge.runtime import m\nfrom cmkd_edge.distill.b import f\n",
        "benchmarks/run.py": "from cmkd_edge.cli.methods import table\n",
        "cmkd_edge/cli/__init__.py": "",
        "cmkd_edge/cli/methods.py": "",
        # an import only a type checker runs forms no cycle (and breaks no rule)
        "runtime/t.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cmkd_edge.distill import a\n",
        # the runtime's layers: the contract may import the backends, not an application (even lazily)
        "runtime/backends/__init__.py": "",
        "runtime/backends/spec.py": "",
        "runtime/contract/__init__.py": "",
        "runtime/contract/manifest.py": "from ..backends import spec\n\n\ndef f():\n    from ..scene import x\n",
        "runtime/formats/__init__.py": "",
        "runtime/formats/chips.py": ("import os\ntry:\n    import PIL\nexcept ImportError:\n    PIL = None\n\n\n"
                                     "def read():\n    import json\n\n\nimport sys\n"),
        "runtime/scene.py": "from .formats import chips\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    modules, edges = build_graph(tmp_path)
    assert cycles(modules, [(e.src, e.dst) for e in edges if not e.local]) == []
    assert cycles(modules, [(e.src, e.dst) for e in edges]) == [["cmkd_edge.distill.a", "cmkd_edge.distill.b"]]
    rules = {(rule.split()[0], e.src, e.dst) for rule, e in rule_violations(edges, packages(modules))}
    assert rules == {
        ("runtime", "cmkd_edge.runtime.m", "cmkd_edge.distill.a"),
        ("export", "cmkd_edge.export.g", "cmkd_edge.distill.b"),
        ("only", "benchmarks/run.py", "cmkd_edge.cli.methods"),
        ("a", "cmkd_edge.diag", "cmkd_edge.distill.a"),
    }
    assert [(e.src, e.dst, e.local) for e in upward_edges(edges)] == [
        ("cmkd_edge.runtime.contract.manifest", "cmkd_edge.runtime.scene", True)]
    assert [(m.path, m.line, m.text) for m in mid_module_imports(tmp_path)] == [
        ("runtime/formats/chips.py", 12, "import sys")]  # not the try-import, not the local one
    text = report(repo=tmp_path)
    assert "module cycles, counting function-local imports: 1" in text
    assert "upward edges, counting function-local imports: 1" in text
    assert "mid-module imports (module-level, after the top import block): 1" in text
