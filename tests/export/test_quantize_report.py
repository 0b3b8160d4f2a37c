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
    # the gate line, the table once, the outcome line once and last, nothing else (NNCF drew its bar
    # on rich's global console, i.e. on stdout, and the rung lines were printed on stderr before
    # the table repeated them)
    assert lines[0].startswith("gate: top1 on val") and "--max-drop 100" in lines[0], res.stdout
    assert lines[1].split()[:5] == ["rung", "top1", "drop", "95%", "interval"], res.stdout
    assert lines[-1].startswith("accepted: ") and sum(line.startswith("accepted") for line in lines) == 1
    tail = ("target: ", "removed ", "wrote ", "unresolved: ", "note: ", "accepted: ")
    rungs = [line.split()[0] for line in lines[2:] if not line.startswith(tail)]
    assert len(rungs) == len(set(rungs)) >= 1
    assert all(len(line.split()) > 4 for line in lines[2:2 + len(rungs)])  # each rung says why
    assert "━" not in res.output and "Statistics collection" not in res.output and "100%" not in res.stdout
    assert res.stderr.strip() == ""  # not a terminal: the transient progress line stays silent
