"""`cmkd-edge quantize` prints one report: no rung lines twice, no NNCF progress bar in the output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cmkd_edge.cli import main


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_quantize_prints_one_report(optical_bundle: Path, tmp_path: Path, backend: str) -> None:
    if backend == "openvino":
        pytest.importorskip("nncf")
    b = Path(shutil.copytree(optical_bundle, tmp_path / "bundle"))
    res = CliRunner().invoke(main, ["quantize", str(b), "--backend", backend, "--calib-size", "16",
                                    "--max-drop", "100"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    # the gate line, the table once, the outcome line once, nothing else (NNCF drew its bar on
    # rich's global console, i.e. on stdout, and the rung lines were printed on stderr before the
    # table repeated them)
    assert lines[0].startswith("gate: ") and lines[1].split()[:3] == ["rung", "top1", "drop"], res.stdout
    assert lines[-1].startswith("accepted: ") and sum(line.startswith("accepted") for line in lines) == 1
    rows = [line for line in lines[2:-1] if not line.startswith(("wrote ", "note: ", "unresolved: "))]
    rungs = [line.split()[0] for line in rows]
    assert len(rungs) == len(set(rungs)) >= 1 and all(r.startswith(("int8-", "fp16", "fp32")) for r in rungs)
    assert "━" not in res.output and "Statistics collection" not in res.output and "it/s" not in res.output
    assert res.stderr.strip() == ""  # not a terminal: the transient progress line stays silent
