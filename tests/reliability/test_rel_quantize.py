"""Quantization through the real CLI: the test split is refused, calibration data that does not fit
the model is refused, and an accuracy gate no rung can pass keeps FP32 with nothing half-written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from .relhelp import TINY, assert_one_line_error, cli, tree_digest

pytest.importorskip("torch")


@pytest.fixture
def bundle(exported_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported_bundle, tmp_path / "bundle"))


@pytest.mark.parametrize("split", ["test", "TEST", " test "])
def test_calibration_from_test_split_is_refused(bundle: Path, split: str) -> None:
    before = tree_digest(bundle)
    assert_one_line_error(cli("quantize", bundle, "--calib-data", TINY, "--calib-split", split),
                          "calibration from the", "split is refused")
    assert tree_digest(bundle) == before


def test_calibration_data_with_another_class_list(bundle: Path) -> None:
    """Labels are class indices: data with other classes would make the gate's verdict meaningless."""
    before = tree_digest(bundle)
    other = "synthetic:per_class=6,size=16,num_classes=2"
    assert_one_line_error(cli("quantize", bundle, "--calib-data", other, "--calib-size", "4"),
                          "has classes Water, Forest", "the bundle was trained on")
    assert tree_digest(bundle) == before


def _paired_4band(root: Path) -> Path:
    import rasterio
    from rasterio.transform import Affine

    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        for sub, arr, desc in (("s2", rng.integers(0, 3000, (4, 16, 16)).astype(np.uint16),
                                ["B02", "B03", "B04", "B08"]),
                               ("s1", rng.uniform(-25, -5, (2, 16, 16)).astype(np.float32), ["VV", "VH"])):
            (root / sub).mkdir(parents=True, exist_ok=True)
            with rasterio.open(root / sub / f"p{i}.tif", "w", driver="GTiff", height=16, width=16,
                               count=arr.shape[0], dtype=arr.dtype.name,
                               transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
                dst.write(arr)
                dst.descriptions = tuple(desc)
        rows.append(f"p{i}.tif,{['Water', 'Forest'][i % 2]},{['train', 'val', 'test'][i % 3]}")
    (root / "labels.csv").write_text("file,label,split\n" + "\n".join(rows) + "\n")
    return root


def test_calibration_data_with_wrong_channels(bundle: Path, tmp_path: Path) -> None:
    """The student deploys on 13 raw Sentinel-2 bands; 4-band data cannot calibrate it."""
    before = tree_digest(bundle)
    data = _paired_4band(tmp_path / "pairs")
    assert_one_line_error(cli("quantize", bundle, "--calib-data", data), "cannot provide the deployed",
                          "B01")
    assert tree_digest(bundle) == before


def test_calibration_data_with_wrong_patch_size(bundle: Path) -> None:
    before = tree_digest(bundle)
    assert_one_line_error(cli("quantize", bundle, "--calib-data", "synthetic:per_class=6,size=8"),
                          "spatial size", "16x16")
    assert tree_digest(bundle) == before


def test_calibration_library_wrong_channel_count(bundle: Path) -> None:
    """Arrays given to the library: channel count checked against the input spec (CLI cannot
    pass arrays; tests/export/test_quantize.py::test_wrong_channel_count_and_units_are_refused
    covers units too)."""
    from cmkd_edge.export.quantize import quantize_bundle
    from cmkd_edge.export.samples import RawSamples

    from cmkd_edge.errors import QuantizationError

    x = np.random.default_rng(0).uniform(0, 3000, (8, 3, 16, 16)).astype(np.float32)
    bad = RawSamples(x, np.zeros(8, np.int64), {"split": "train"})
    before = tree_digest(bundle)
    with pytest.raises(QuantizationError, match=r"\(N, 13, H, W\)"):
        quantize_bundle(bundle, calib_data=bad, val_data=bad)
    assert tree_digest(bundle) == before


@pytest.fixture
def fragile_bundle(student_run: Path, tmp_path: Path) -> Path:
    """The student with all head rows equal up to 1e-4: any rounding of the weights (FP16, INT8)
    changes its decisions, so a 0-point gate cannot be passed by any quantized rung."""
    import torch

    from cmkd_edge.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(student_run / "best.pt")
    sd = ckpt.state_dict
    w = sd["head.weight"]
    g = torch.Generator().manual_seed(0)
    sd["head.weight"] = w[:1].expand_as(w).clone() + 1e-4 * w.abs().mean() * torch.randn(w.shape, generator=g)
    sd["head.bias"] = torch.zeros_like(sd["head.bias"])
    save_checkpoint(tmp_path / "fragile.pt", ckpt)
    res = cli("export", tmp_path / "fragile.pt", "--out", tmp_path / "fragile", "--samples", "8")
    assert res.exit_code == 0, res.stderr[-2000:]
    return tmp_path / "fragile"


@pytest.fixture
def self_labelled_data(fragile_bundle: Path, tmp_path: Path) -> Path:
    """A paired dataset (13-band s2 + s1) labelled with the fragile FP32 model's own predictions,
    so FP32 scores 100 % on its val split and any changed decision is a drop."""
    import onnxruntime as ort
    import rasterio
    from rasterio.transform import Affine

    m = json.loads((fragile_bundle / "manifest.json").read_text())
    bands, classes = m["input"]["band_names"], m["class_names"]
    x = np.random.default_rng(1).uniform(0, 5000, (40, len(bands), 16, 16)).astype(np.float32)
    sess = ort.InferenceSession(str(fragile_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    pred = sess.run(None, {sess.get_inputs()[0].name: x})[0].argmax(1)
    root = tmp_path / "self-labelled"
    rows = []
    for i, (patch, k) in enumerate(zip(x, pred, strict=True)):
        for sub, arr, desc in (("s2", patch, bands), ("s1", np.full((2, 16, 16), -12.0, np.float32),
                                                       ["VV", "VH"])):
            (root / sub).mkdir(parents=True, exist_ok=True)
            with rasterio.open(root / sub / f"p{i}.tif", "w", driver="GTiff", height=16, width=16,
                               count=arr.shape[0], dtype="float32",
                               transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
                dst.write(arr)
                dst.descriptions = tuple(desc)
        rows.append(f"p{i}.tif,{classes[k]},{'train' if i < 16 else 'val'}")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    (root / "labels.csv").write_text("file,label,split\n" + "\n".join(rows) + "\n")
    return root


def test_gate_no_rung_can_pass(fragile_bundle: Path, self_labelled_data: Path) -> None:
    before = tree_digest(fragile_bundle)
    manifest_before = json.loads((fragile_bundle / "manifest.json").read_text())
    res = cli("quantize", fragile_bundle, "--precision", "fp16", "--calib-data", self_labelled_data,
              "--max-drop", "0")
    line = assert_one_line_error(res, "no fp16 rung passed the accuracy gate", "FP32 kept", progress=True)
    assert "fail" in res.stdout and "accepted: fp32" in res.stdout  # the report: every rung tried
    after = tree_digest(fragile_bundle)
    # FP32 kept: the model file is byte-identical, no quantized artifact was added, and the only
    # change is the manifest's record of the rungs tried (written atomically; the bundle verifies)
    assert after["model.onnx"] == before["model.onnx"] and set(after) == set(before), line
    m = json.loads((fragile_bundle / "manifest.json").read_text())
    assert [a["id"] for a in m["artifacts"]] == [a["id"] for a in manifest_before["artifacts"]]
    # keyed by backend (or "backend:precision"): the one record this run wrote
    rec = next(v for v in m["quantization"].values() if isinstance(v, dict) and v.get("backend") == "onnxruntime")
    assert rec["accepted"] == "fp32" and not rec["passed"] and rec["rungs"][0]["passed"] is False
    assert rec["gate"]["fp32_top1"] == 100.0
    assert cli("bundle", fragile_bundle, "--verify").exit_code == 0
    leftovers = [p.name for p in fragile_bundle.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers
