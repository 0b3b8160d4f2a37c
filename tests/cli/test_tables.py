"""Tables read whole at any width: wide in a pipe, folded (never cut to 'onnx-fp…') on a narrow terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from cmkd_edge.cli.demo import DemoState, print_table
from cmkd_edge.cli.demo_deploy import print_artifacts
from cmkd_edge.cli.evaluate import print_report

ARTIFACTS = [("onnx-fp32", "onnxruntime", "fp32"), ("onnx-int8", "onnxruntime", "int8"),
             ("openvino-ir-fp32", "openvino", "fp32"), ("openvino-ir-int8", "openvino", "int8")]


def demo_state(tmp_path: Path) -> DemoState:
    state = DemoState(workdir=tmp_path, data=None)
    state.rows = [{"model": m, "arch": "mobilenetv2-tiny", "view": "sar-sim", "test accuracy": 0.8125,
                   "macro-F1": 0.80, "n": 48} for m in ("teacher", "student-nokd", "student-kd")]
    state.results["artifacts"] = [
        {"artifact": a, "backend": b, "precision": p, "gate": "pass", "test acc": 0.8125, "n": 48,
         "p50 e2e ms": 0.412, "p50 model ms": 0.398} for a, b, p in ARTIFACTS]
    state.timings = {"data": 0.1}
    return state


def assert_rows_whole(text: str) -> None:
    assert "…" not in text, text
    for a, b, p in ARTIFACTS:  # each artifact's names on one line: rows tell apart in a log
        assert any(a in line and b in line and p in line for line in text.splitlines()), (a, text)


def test_demo_tables_whole_through_a_pipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    print_table(demo_state(tmp_path))  # capsys: stdout is not a terminal, as with `| cat`
    out = capsys.readouterr().out
    assert_rows_whole(out)
    assert "test accuracy" in out and "student-nokd" in out and "precision" in out


def test_demo_table_folds_on_a_narrow_terminal(tmp_path: Path) -> None:
    buf = io.StringIO()
    print_artifacts(demo_state(tmp_path), Console(file=buf, width=60, force_terminal=True, color_system=None))
    text = buf.getvalue()
    assert "…" not in text
    # folded cells continue on the next line of the same cell: column 1, read down, is every name whole
    first_column = "".join(line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│"))
    assert first_column == "".join(a for a, _, _ in ARTIFACTS)


def test_evaluate_tables_whole_through_a_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    names = ["AnnualCrop", "HerbaceousVegetation", "PermanentCrop", "SeaLake"]
    print_report({"checkpoint": "runs/student/best.pt", "arch": "resnet-narrow", "view": "rgb",
                  "data": "eurosat", "split": "test", "n": 40, "task": "multiclass", "accuracy": 0.9,
                  "macro_f1": 0.88, "ece": 0.05, "class_names": names,
                  "per_class_accuracy": dict.fromkeys(names, 0.9),
                  "confusion_matrix": [[10 if i == j else 0 for j in range(4)] for i in range(4)]})
    out = capsys.readouterr().out
    assert "…" not in out and "HerbaceousVegetation" in out and "1 HerbaceousVegetation" in out
