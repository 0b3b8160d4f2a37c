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
    # the table once, the accepted line once, nothing else (NNCF drew its bar on rich's global
    # console, i.e. on stdout, and the rung lines were printed on stderr before the table repeated them)
    assert lines[0].split() == ["rung", "top1", "drop", "worst", "class", "result"], res.stdout
    assert lines[-1].startswith("accepted: ") and sum(line.startswith("accepted") for line in lines) == 1
    rungs = [line.split()[0] for line in lines[1:-1]]
    assert len(rungs) == len(set(rungs)) >= 1
    assert "━" not in res.output and "Statistics collection" not in res.output and "%" not in res.stdout
    assert res.stderr.strip() == ""  # not a terminal: the transient progress line stays silent
