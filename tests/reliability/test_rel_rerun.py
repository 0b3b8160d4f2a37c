"""Nothing is lost by re-running (issue 9, item 7): export, quantize, compile and archives."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from cmkd_edge.export.quantize import quantize_bundle
from cmkd_edge.export.quantize.gate import run
from cmkd_edge.export.quantize.ladder import check_strict
from cmkd_edge.export.samples import RawSamples
from cmkd_edge.runtime.contract.bundle import open_bundle, pack_bundle
from cmkd_edge.runtime.contract.records import QuantRecord

from cmkd_edge.errors import QuantizationError

from .relhelp import assert_one_line_error, cli, cli_ok, tree_digest


def test_export_onto_an_existing_bundle_refuses_without_force(exported_bundle: Path, student_run: Path,
                                                              tmp_path: Path) -> None:
    target = Path(shutil.copytree(exported_bundle, tmp_path / "bundle"))
    before = tree_digest(target)
    res = cli("export", student_run / "best.pt", "--out", target, "--samples", "8")
    assert_one_line_error(res, "already holds a bundle", "onnx-fp32", "pass --force")
    assert tree_digest(target) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    res = cli("export", student_run / "best.pt", "--out", tmp_path / "other", "--force")
    assert_one_line_error(res, "exists and is not a bundle")  # never takes over a foreign directory
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    ok = cli_ok("export", student_run / "best.pt", "--out", target, "--samples", "8", "--force")
    assert f"replaced the bundle at {target}" in ok.stdout and "onnx-fp32" in ok.stdout


def test_stricter_quantize_says_what_it_removed_and_ends_lower(exported_bundle: Path, tmp_path: Path) -> None:
    b = Path(shutil.copytree(exported_bundle, tmp_path / "bundle"))
    hw = open_bundle(b).manifest.input.shape[2]
    rng = np.random.default_rng(0)
    x = rng.uniform(200, 4000, (64, 13, hw, hw)).astype(np.float32)
    y = run("onnxruntime", b / "model.onnx", x).argmax(1)
    cal, val = RawSamples(x[:32], y[:32], {"split": "train"}), RawSamples(x[32:], y[32:], {"split": "val"})
    first = quantize_bundle(b, calib_data=cal, val_data=val, max_drop=100.0, agreement_data=None).to_dict()
    assert first["accepted_precision"] == "int8" and not first["ended_lower"]
    # calibration on one constant patch: INT8 ranges that saturate on real inputs
    bad = RawSamples(np.full((8, 13, hw, hw), 300, np.float32), y[:8], {"split": "train"})
    rec = quantize_bundle(b, calib_data=bad, val_data=val, max_drop=0.0, agreement_data=None).to_dict()
    assert rec["accepted_precision"] == "fp16" and rec["ended_lower"]
    assert rec["outcome"].startswith("accepted: fp16 (onnxruntime); requested int8, ended on a LOWER rung")
    gone = {r["id"]: r for r in rec["replaced"]}
    assert gone["onnx-int8"]["gate_passed"] is True and "accepted no int8 rung" in gone["onnx-int8"]["why"]
    assert all(r.get("reason") for r in rec["rungs"])  # every rung says why it passed or failed
    with pytest.raises(QuantizationError, match="--strict: accepted: fp16"):
        check_strict(QuantRecord.from_dict(rec), True)
    check_strict(QuantRecord.from_dict(rec), False)
    assert {a.id for a in open_bundle(b).manifest.artifacts} == {"onnx-fp32", "onnx-fp16"}


def test_an_archive_given_to_quantize_is_never_rewritten(exported_bundle: Path, tmp_path: Path) -> None:
    archive = pack_bundle(exported_bundle, tmp_path / "student.tar.gz")
    before = archive.read_bytes()
    res = cli_ok("quantize", archive, "--precision", "fp16", "--max-drop", "100")
    out = tmp_path / "student-onnxruntime-fp16.tar.gz"
    assert archive.read_bytes() == before and out.is_file()
    assert f"wrote {out}" in res.stdout and res.stdout.strip().splitlines()[-1].startswith("accepted: fp16")
    assert {a.id for a in open_bundle(out).manifest.artifacts} == {"onnx-fp32", "onnx-fp16"}
    assert_one_line_error(cli("quantize", archive, "--precision", "fp16", "--out", archive),
                          "is the input bundle")
    assert archive.read_bytes() == before
