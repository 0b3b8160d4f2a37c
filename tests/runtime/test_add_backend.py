"""docs/architecture.md "Adding a backend", followed step by step for a throwaway backend.

Step 1 is ``numpy_backend.py`` (a runner that evaluates the ONNX graph with numpy, and its
``BACKEND`` declaration); step 2 is the one registration line in the fixture below, the same line
``runtime/backends/__init__.py`` holds for the shipped backends. Nothing else is touched, and the
commands a user meets see the backend: ``list``, ``classify --backend``, ``profile`` and
``evaluate``. The doc's steps are checked against this file, so the two cannot drift apart.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from cmkd_edge.runtime.backends import BACKENDS

from cmkd_edge.cli import main

ROOT = Path(__file__).resolve().parents[2]
NAME = "numpy-onnx"
LINE = re.compile(r'BACKENDS\.add\("(?P<name>[^"]+)", "(?P<module>[\w.]+):BACKEND"\)')


@pytest.fixture
def numpy_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Step 2, the registration line; undone afterwards so the other tests see the shipped three."""
    monkeypatch.setenv("CMKD_EDGE_SPEED_PROBE", "0")  # the fixed order decides: registration is tested
    # the command modules are imported first, as in a process that was running before the backend
    # came: their --backend choices must be read on use, not frozen at import
    importlib.import_module("cmkd_edge.cli.runtime")
    BACKENDS.add("numpy-onnx", "numpy_backend:BACKEND")
    try:
        yield NAME
    finally:
        BACKENDS.unregister(NAME)


def cli(*args: object) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


def _patches(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 10000, (n, 13, 16, 16)).astype(np.float32)


def test_the_backend_runs_the_graph_like_onnx_runtime(bundle_dir: Path) -> None:
    """The throwaway runner is real: on the factory's student graph it computes what ORT does."""
    from cmkd_edge.runtime.backends.onnxruntime import OrtRunner
    from numpy_backend import NumpyRunner

    x = _patches()
    with NumpyRunner(bundle_dir / "model.onnx") as ours, OrtRunner(bundle_dir / "model.onnx") as ort:
        assert ours.input_specs() == ort.input_specs()
        np.testing.assert_allclose(ours.infer({"input": x})["logits"], ort.infer({"input": x})["logits"],
                                   rtol=1e-4, atol=1e-4)


def test_an_unknown_op_is_refused_in_one_line(tmp_path: Path) -> None:
    import onnx
    from numpy_backend import NumpyRunner
    from onnx import TensorProto, helper

    from cmkd_edge.errors import BundleError

    graph = helper.make_graph([helper.make_node("Tanh", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    onnx.save_model(helper.make_model(graph), str(tmp_path / "tanh.onnx"))
    with pytest.raises(BundleError, match="numpy-onnx cannot run tanh.onnx: ops Tanh"):
        NumpyRunner(tmp_path / "tanh.onnx").open()


def test_commands_see_a_backend_registered_in_one_line(numpy_backend: str, bundle_dir: Path,
                                                       tmp_path: Path) -> None:
    from numpy_backend import BACKEND

    # list: the name and the declaration's summary
    code, out, _ = cli("list", "backends", "--json")
    assert code == 0 and json.loads(out)[NAME] == BACKEND.summary
    # classify --backend: the new backend runs the bundle's ONNX, and answers as ONNX Runtime does
    x = _patches()
    np.save(tmp_path / "x.npy", x)
    runs = {}
    for backend in (NAME, "onnxruntime"):
        code, out, err = cli("classify", bundle_dir, tmp_path / "x.npy", "--backend", backend, "--json")
        assert code == 0, err
        runs[backend] = json.loads(out)
    assert (runs[NAME]["backend"], runs[NAME]["artifact"]) == (NAME, "onnx-fp32")
    assert runs[NAME]["selection"]["how"] != ""
    for ours, ref in zip(runs[NAME]["results"], runs["onnxruntime"]["results"], strict=True):
        assert ours["class"] == ref["class"] and abs(ours["probability"] - ref["probability"]) < 1e-4
    # profile --backend: a latency report row on the new backend, its versions from the declaration
    code, out, err = cli("profile", bundle_dir, "--backend", NAME, "--precision", "fp32", "--warmup", "1",
                         "--iterations", "5", "--json", "-")
    assert code == 0, err
    reports = json.loads(out)["reports"]
    assert [(r["backend"], r["artifact"]) for r in reports] == [(NAME, "onnx-fp32")]
    assert "onnx" in reports[0]["versions"] and reports[0]["end_to_end"]["p50_ms"] > 0
    # evaluate: the ONNX artifact is scored on the new backend too, paired to the FP32 reference
    labels = np.arange(len(x)) % 4
    np.savez(tmp_path / "test.npz", x=x, labels=labels)
    code, out, err = cli("evaluate", bundle_dir, "--data", tmp_path / "test.npz", "--split", "test",
                         "--json")
    assert code == 0, err
    rows = {(r["backend"], r["artifact"]): r for r in json.loads(out)["rows"]}
    ours, ref = rows[(NAME, "onnx-fp32")], rows[("onnxruntime", "onnx-fp32")]
    assert ours["agreement_with_fp32"] == 100.0 and ours["accuracy"] == ref["accuracy"]
    assert ours["difference"] == "no measurable difference"


def test_once_unregistered_the_commands_refuse_it(bundle_dir: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", _patches(1))
    code, _, err = cli("classify", bundle_dir, tmp_path / "x.npy", "--backend", NAME)
    assert code == 2 and f"'{NAME}' is not one of 'auto', 'onnxruntime'" in err
    code, out, _ = cli("list", "backends", "--json")
    assert NAME not in json.loads(out)


def test_the_architecture_doc_lists_the_steps_this_test_follows() -> None:
    """The doc's registration line is the fixture's, its step-1 module is shaped like ours, and no
    other file of the project names the throwaway backend (one module plus one line, nothing else)."""
    import numpy_backend
    from cmkd_edge.runtime.backends.base import Runner
    from cmkd_edge.runtime.backends.spec import BackendSpec

    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc[doc.index("### Adding a backend"):]
    section = section[:section.index("\n## ")]
    steps = re.findall(r"^(\d)\. \*\*(.+?)\*\*", section, re.M)
    assert [n for n, _ in steps] == ["1", "2", "3", "4"], steps
    assert 'BACKENDS.add("<name>", "<module>:BACKEND")' in section
    assert "tests/runtime/test_add_backend.py" in section and "numpy_backend.py" in section
    # step 1: a module ending in BACKEND = BackendSpec(...) whose runner is a Runner
    assert isinstance(numpy_backend.BACKEND, BackendSpec) and issubclass(numpy_backend.BACKEND.runner, Runner)
    # step 2: the fixture's registration line has the doc's form, and so do the shipped backends'
    (line,) = list(LINE.finditer(Path(__file__).read_text()))
    assert (line["name"], line["module"]) == (NAME, "numpy_backend")
    shipped = LINE.findall((ROOT / "runtime" / "backends" / "__init__.py").read_text())
    assert [n for n, _ in shipped] == ["onnxruntime", "openvino", "tensorrt"]
    # step 4: nothing else names it
    named = [p.relative_to(ROOT).as_posix() for d in ("cmkd_edge", "runtime", "export", "benchmarks")
             for p in (ROOT / d).rglob("*.py") if NAME in p.read_text()]
    assert named == []

