"""Export records the training data (path, seed, split table, patch size); quantize draws its
samples from that record; compiled INT8 artifacts are gated only by their own evaluation and go
away with the QDQ model they were built from."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import pytest
from cmkd_edge.export.bundle import BundleEdit
from cmkd_edge.export.compile import compile_bundle
from cmkd_edge.export.quantize import quantize_bundle
from cmkd_edge.export.student import export_checkpoint
from cmkd_edge.runtime.contract.bundle import open_bundle
from cmkd_edge.runtime.contract.manifest import Artifact, Manifest
from cmkd_edge.runtime.contract.specs import InputSpec, OutputSpec, PreprocessSpec

from cmkd_edge.checkpoint import load_checkpoint, save_checkpoint
from cmkd_edge.data import open_dataset
from cmkd_edge.errors import ExportValidationError
from tests.export.export_helpers import make_checkpoint


def _run_dir(tmp: Path, *, input_hw: list[int] | None = (32, 32), swap_split: bool = False) -> Path:
    """A training run dir: best.pt on the synthetic data (+ input_hw) and its split.csv.

    ``swap_split`` exchanges the generator's train and test samples, so a quantize that ignored the
    run's table would calibrate on exactly the samples the run tests on."""
    run = tmp / "run"
    run.mkdir()
    ckpt = load_checkpoint(make_checkpoint(run / "raw.pt"))
    meta = dataclasses.replace(ckpt.meta, seed=5, **(
        {"input_hw": tuple(input_hw)} if input_hw is not None else {}))
    save_checkpoint(run / "best.pt", dataclasses.replace(ckpt, meta=meta))
    (run / "raw.pt").unlink()
    swap = {"train": "test", "test": "train", "val": "val"} if swap_split else {}
    table = open_dataset(None, views=["rgb"], split="train").split_table
    with open(run / "split.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sample_id", "split"])
        w.writerows((sid, swap.get(s, s)) for sid, s in table)
    return run


def _art(id_: str, source: str | None = None) -> Artifact:
    return Artifact(id=id_, path=f"{id_}.onnx", format="onnx", precision="fp32",
                    backend="onnxruntime", files=(f"{id_}.onnx",), source=source)


def test_drop_artifacts_follows_sources():
    m = Manifest(task="multiclass", class_names=("a",),
                 input=InputSpec(modality="optical", band_names=("B04",), units="reflectance_x1e4",
                                 shape=(None, 1, 4, 4)),
                 output=OutputSpec(), preprocess=PreprocessSpec("s2", ("B04",), "reflectance_x1e4", (0,)),
                 artifacts=(_art("onnx-fp32"), _art("onnx-int8"),
                            _art("openvino-ir-int8", "onnx-int8"), _art("x", "openvino-ir-int8"),
                            _art("openvino-ir-fp32", "onnx-fp32")))
    edit = BundleEdit(Path("."), m)
    assert edit.drop(["onnx-int8"]) == ["onnx-int8", "openvino-ir-int8", "x"]
    assert [a.id for a in edit.manifest.artifacts] == ["onnx-fp32", "openvino-ir-fp32"]
    assert edit.put(_art("onnx-fp32")) == ["openvino-ir-fp32"]
    assert [a.id for a in edit.manifest.artifacts] == ["onnx-fp32"]


def test_export_records_training_data_and_size(tmp_path):
    run = _run_dir(tmp_path)
    b = export_checkpoint(run / "best.pt", tmp_path / "b", samples=4, batch=2)
    m = open_bundle(b).manifest  # verifies split.csv's sha256 too
    rec = m.provenance.data.to_dict()
    assert rec["path"] is None and rec["seed"] == 5 and rec["split_file"] == "split.csv"
    assert "split.csv" in m.files and (b / "split.csv").read_bytes() == (run / "split.csv").read_bytes()
    assert m.input.shape == (None, 13, 32, 32)


def test_export_refuses_parity_data_of_another_patch_size(tmp_path):
    run = _run_dir(tmp_path)
    with pytest.raises(ExportValidationError, match="has 16x16 patches; the student was trained on 32x32"):
        export_checkpoint(run / "best.pt", tmp_path / "b", data="synthetic:size=16,per_class=4", samples=4,
                          batch=2)
    with pytest.raises(ExportValidationError, match="trained on 32x32"):
        export_checkpoint(run / "best.pt", tmp_path / "b", hw=(64, 64), samples=4, batch=2)
    assert not (tmp_path / "b").exists()


def test_old_checkpoint_without_size_or_data_is_refused_not_guessed(tmp_path):
    run = _run_dir(tmp_path, input_hw=None)
    with pytest.raises(ExportValidationError, match="input size is unknown"):
        export_checkpoint(run / "best.pt", tmp_path / "b", data="/nonexistent", samples=4, batch=2)
    b = export_checkpoint(run / "best.pt", tmp_path / "b", data="/nonexistent", samples=4, batch=2,
                          hw=(24, 24))  # the override still serves old checkpoints
    assert open_bundle(b).manifest.input.shape == (None, 13, 24, 24)


def test_quantize_uses_the_runs_split_and_compiled_int8_is_regated(tmp_path):
    run = _run_dir(tmp_path, swap_split=True)
    b = export_checkpoint(run / "best.pt", tmp_path / "b", samples=4, batch=2)
    rec = quantize_bundle(b, calib_size=8, max_drop=100.0).to_dict()  # no --calib-data: the recorded data
    n_train = sum(1 for line in (run / "split.csv").read_text().splitlines()[1:]
                  if line.endswith(",train"))
    cal = rec["calibration"]
    assert cal["split_table"] == "training run (bundle split.csv)" and cal["of"] == n_train
    assert cal["seed"] == 5 and rec["gate"]["sha256"]

    (ir,) = [c.to_dict() for c in compile_bundle(b, target="openvino", precisions=("int8",))]
    assert ir["source"] == "onnx-int8" and ir["gate"]["evaluated"] and ir["gate_passed"] is True
    assert ir["accuracy"]["backend"] == "openvino"

    quantize_bundle(b, calib_size=8, max_drop=100.0, calib_method="entropy")
    ids = {a.id for a in open_bundle(b).manifest.artifacts}
    assert "onnx-int8" in ids and "openvino-ir-int8" not in ids  # built from the old QDQ model


def test_compiled_int8_without_rereadable_gate_data_is_not_gated(tmp_path, optical_bundle):
    from test_quantize import _sets

    b = tmp_path / "b"
    shutil.copytree(optical_bundle, b)
    cal, val = _sets(b)
    quantize_bundle(b, calib_data=cal, val_data=val)  # arrays: cannot be re-read at compile time
    (ir,) = [c.to_dict() for c in compile_bundle(b, target="openvino", precisions=("int8",))]
    assert ir["gate_passed"] is None and not ir["gate"]["evaluated"] and ir["source"] == "onnx-int8"
