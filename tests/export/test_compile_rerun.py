"""compile says what it replaced and never rewrites an input archive (issue 9, item 7)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from cmkd_edge.runtime.contract.bundle import open_bundle, pack_bundle

from cmkd_edge.cli import main


def test_recompile_reports_replacement_and_archives_stay(optical_bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    b = Path(shutil.copytree(optical_bundle, tmp_path / "bundle"))
    run = CliRunner()
    first = run.invoke(main, ["compile", str(b), "--target", "openvino"])
    assert first.exit_code == 0, first.output
    assert "added openvino-ir-fp32" in first.stdout and "removed" not in first.stdout
    again = run.invoke(main, ["compile", str(b), "--target", "openvino"])
    assert again.exit_code == 0, again.output
    assert "removed openvino-ir-fp32: replaced by this compile of openvino-ir-fp32 from onnx-fp32" in again.stdout
    archive = pack_bundle(b, tmp_path / "s.tar.gz")
    before = archive.read_bytes()
    res = run.invoke(main, ["compile", str(archive), "--target", "openvino"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "s-openvino.tar.gz"
    assert archive.read_bytes() == before and f"wrote {out}" in res.stdout
    assert open_bundle(out).manifest.find("openvino-ir-fp32") is not None
