"""quantize: calibration rules, U8S8/S8S8 choice, the accuracy gate and its fallback ladder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cmkd_edge.export.quantize import quantize_bundle
from cmkd_edge.export.quantize.gate import Gate, judge, run
from cmkd_edge.export.quantize.ort import choose_int8_types
from cmkd_edge.export.samples import RawSamples
from cmkd_edge.export.student import export_checkpoint
from cmkd_edge.runtime.contract.bundle import open_bundle

from cmkd_edge.checkpoint import load_checkpoint, save_checkpoint
from cmkd_edge.errors import QuantizationError
from tests.export.export_helpers import make_checkpoint, raw_batch


def _copy(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    return out


def _sets(bundle: Path, n_cal: int = 24, n_val: int = 16) -> tuple[RawSamples, RawSamples]:
    """Raw arrays labelled with the FP32 model's own predictions (FP32 top-1 = 100 %)."""
    x = raw_batch(n_cal + n_val, hw=32, seed=3)
    y = run("onnxruntime", bundle / "model.onnx", x).argmax(1)
    return (RawSamples(x[:n_cal], y[:n_cal], {"data": "arrays", "split": "train"}),
            RawSamples(x[n_cal:], y[n_cal:], {"data": "arrays", "split": "val"}))


def test_types_follow_the_target_device():
    from cmkd_edge.runtime.device_profiles import resolve

    avx2, vnni = choose_int8_types(resolve("x86-64-avx2")), choose_int8_types(resolve("x86-64-vnni"))
    assert avx2["name"] == "U8S8" and avx2["reduce_range"]
    assert vnni["name"] == "U8S8" and not vnni["reduce_range"]
    for arm in ("aarch64", "aarch64-dotprod"):
        t = choose_int8_types(resolve(arm))
        assert t["name"] == "S8S8" and not t["reduce_range"] and t["profile"] == arm
    # a Cortex-A72 has no dot product: its reason must not claim SDOT
    assert "SDOT" not in choose_int8_types(resolve("aarch64"))["reason"]
    assert choose_int8_types()["profile"].startswith("host")


def test_quantize_for_another_device_writes_its_format_and_warns_there(optical_bundle, tmp_path, caplog):
    """--for aarch64 on this x86 host: S8S8 QDQ (int8 activations), the target in the manifest, and
    a bundle opened here warns once that it was quantized for another device."""
    import logging

    import onnx
    from cmkd_edge.runtime import Classifier
    from cmkd_edge.runtime.device_profiles import host_profile

    b = _copy(optical_bundle, tmp_path)
    cal, val = _sets(b)
    rec = quantize_bundle(b, backend="onnxruntime", calib_data=cal, val_data=val, target="aarch64")
    assert rec.passed and rec.target is not None and rec.target.profile == "aarch64"
    assert rec.target.machine == "aarch64" and "neon" in rec.target.features
    assert rec.extra["int8_types"]["name"] == "S8S8"
    # this AVX2/VNNI host's fused kernels differ from the board's: the gate ran reference QDQ
    assert rec.extra["gate_arithmetic"] == "reference" and "S8S8" in rec.extra["gate_arithmetic_why"]
    assert rec.accepted.startswith("int8")
    m = open_bundle(b).manifest
    assert m.quant("onnxruntime", "int8").target == rec.target  # survives the manifest round trip
    model = onnx.load(str(b / m.artifact("onnx-int8").path))
    zps = {i.name: i for i in model.graph.initializer}
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2)
    assert zps[q.input[2]].data_type == onnx.TensorProto.INT8  # S8 activations, not x86's U8
    assert host_profile().machine == "x86_64"  # the host this test measures the warning on
    with caplog.at_level(logging.WARNING, logger="cmkd_edge.runtime"):
        clf = Classifier.open(b, backend="onnxruntime", artifact="onnx-int8")
        Classifier.open(b, backend="onnxruntime", artifact="onnx-int8")
    warned = [r for r in caplog.records if "quantized for aarch64" in r.getMessage()]
    assert len(warned) == 1, caplog.text  # once per bundle and artifact
    assert "quantized for aarch64" in clf.selection["target_warning"]
    from click.testing import CliRunner

    from cmkd_edge.cli import main

    np.save(tmp_path / "p.npy", val.x[:1])
    res = CliRunner().invoke(main, ["classify", str(b), str(tmp_path / "p.npy"), "--backend", "onnxruntime",
                                    "--precision", "int8", "--no-speed-probe"])
    assert res.exit_code == 0 and "warning: onnx-int8: quantized for aarch64" in res.stderr, res.output
    fp32 = Classifier.open(b, backend="onnxruntime", artifact="onnx-fp32")
    assert "target_warning" not in fp32.selection  # FP32 has no device-specific format
    host = quantize_bundle(_copy(optical_bundle, tmp_path / "h"), backend="onnxruntime", calib_data=cal,
                           val_data=val)
    assert host.extra["gate_arithmetic"] == "native" and host.target.source == "host"


def test_unknown_target_device_is_refused_before_any_work(optical_bundle, tmp_path):
    from cmkd_edge.errors import ConfigError

    b = _copy(optical_bundle, tmp_path)
    before = (b / "manifest.json").read_bytes()
    with pytest.raises(ConfigError, match="unknown device 'raspberry'"):
        quantize_bundle(b, target="raspberry")
    assert (b / "manifest.json").read_bytes() == before


def test_int8_onnxruntime_passes_gate_and_is_recorded(optical_bundle, tmp_path):
    b = _copy(optical_bundle, tmp_path)
    cal, val = _sets(b)
    rec = quantize_bundle(b, backend="onnxruntime", calib_data=cal, val_data=val).to_dict()
    assert rec["passed"] and rec["accepted"].startswith("int8")
    assert rec["int8_types"]["name"] in ("U8S8", "S8S8") and "cpu_flags" in rec["int8_types"]
    assert rec["calibration"]["sha256"] == cal.sha256() and rec["calibration"]["size"] == 24
    m = open_bundle(b).manifest
    art = m.artifact("onnx-int8")
    assert art.gate_passed and art.precision == "int8"
    assert m.quant("onnxruntime", "int8").rungs[0].rung == "int8-minmax"
    import onnx

    model = onnx.load(str(b / art.path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    first_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    # preprocessing stays in float: the graph input is never quantized directly
    assert first_q.input[0] != model.graph.input[0].name


def test_calibration_from_test_split_is_refused(optical_bundle, tmp_path):
    b = _copy(optical_bundle, tmp_path)
    before = (b / "manifest.json").read_bytes()
    with pytest.raises(QuantizationError, match="test"):
        quantize_bundle(b, calib_split="test")
    cal, val = _sets(b)
    cal.info["split"] = "test"
    with pytest.raises(QuantizationError, match="test"):
        quantize_bundle(b, calib_data=cal, val_data=val)
    assert (b / "manifest.json").read_bytes() == before


def test_wrong_channel_count_and_units_are_refused(optical_bundle, tmp_path):
    b = _copy(optical_bundle, tmp_path)
    cal, val = _sets(b)
    bad = RawSamples(cal.x[:, :4], cal.labels, {"split": "train"})
    with pytest.raises(QuantizationError, match=r"\(N, 13, H, W\)"):
        quantize_bundle(b, calib_data=bad, val_data=val)
    scaled = RawSamples(cal.x / 1e4 - 5.0, cal.labels, {"split": "train"})  # wrong units
    with pytest.raises(QuantizationError, match="outside the expected"):
        quantize_bundle(b, calib_data=scaled, val_data=val)


@pytest.fixture(scope="module")
def fragile_bundle(tmp_path_factory) -> Path:
    """A student whose head rows differ by 1e-4 relative: FP32 keeps its decisions, rounding the
    weights to 16 or 8 bits scrambles them (so FP16 and plain INT8 fail a 0-point gate)."""
    d = tmp_path_factory.mktemp("fragile")
    ckpt = load_checkpoint(make_checkpoint(d / "s.pt", seed=1))
    sd = ckpt.state_dict
    w = sd["head.weight"]
    sd["head.weight"] = w[:1].expand_as(w) + 1e-4 * w.abs().mean() * torch.randn_like(w)
    sd["head.bias"] = torch.zeros_like(sd["head.bias"])
    save_checkpoint(d / "fragile.pt", ckpt)
    return export_checkpoint(d / "fragile.pt", d / "bundle", samples=8, batch=4, hw=(32, 32),
                             data="/nonexistent")


def test_ladder_falls_back_to_sensitive_layers_in_float(fragile_bundle, tmp_path):
    b = _copy(fragile_bundle, tmp_path)
    cal, val = _sets(b, n_cal=16, n_val=32)
    rec = quantize_bundle(b, backend="onnxruntime", calib_data=cal, val_data=val, max_drop=0.0).to_dict()
    tried = [r["rung"] for r in rec["rungs"]]
    assert tried[:3] == ["int8-minmax", "int8-entropy", "int8-percentile"]
    assert all(not r["passed"] for r in rec["rungs"][:3])  # plain INT8 collapses
    last = rec["rungs"][-1]
    assert last["rung"] == rec["accepted"]
    if rec["accepted"] == "int8-sensitive-float":
        assert last["excluded_nodes"] and last["sensitive"][0]["added_nsr"] >= 0
        assert open_bundle(b).manifest.artifact("onnx-int8").rung == "int8-sensitive-float"


def test_gate_no_rung_passes_keeps_fp32(fragile_bundle, tmp_path):
    b = _copy(fragile_bundle, tmp_path)
    _, val = _sets(b, n_cal=16, n_val=32)
    before = open_bundle(b).manifest
    rec = quantize_bundle(b, backend="onnxruntime", precision="fp16", val_data=val, max_drop=0.0).to_dict()
    assert [r["rung"] for r in rec["rungs"]] == ["fp16", "fp32"]
    assert not rec["rungs"][0]["passed"] and rec["rungs"][0]["drop"] > 0
    assert rec["accepted"] == "fp32" and not rec["passed"]
    m = open_bundle(b).manifest  # complete, verified, FP32 only
    assert [a.id for a in m.artifacts] == ["onnx-fp32"] and sorted(m.files) == ["model.onnx"]
    assert m.files == before.files
    assert m.quant("onnxruntime", "fp16").accepted == "fp32"


def test_judge_per_class_rule_only_where_the_class_can_resolve_it():
    """One flip in a 4-sample class is not a "25-point class drop" (issue 9); a class with enough
    samples and a clear loss still fails, and says which class and by how much."""
    # the 8-epoch EuroSAT case: 10 classes x 4 validation patches, FP32 right on 30; INT8
    # loses one patch of class 0 and gains one of class 1: 0.0 overall drop, 95 % agreement
    labels = np.repeat(np.arange(10), 4)
    ref_pred = labels.copy()
    ref_pred[2::4] = (labels[2::4] + 1) % 10  # FP32 wrong on 10 patches
    cand_pred = ref_pred.copy()
    cand_pred[0] = 5  # class 0: one flip lost (the old rule's "25-point class drop")
    cand_pred[6] = 1  # class 1: one flip gained
    ref, cand = np.eye(10)[ref_pred], np.eye(10)[cand_pred]
    names = [f"c{i}" for i in range(10)]
    v = judge(ref, cand, labels, names, Gate(max_drop=1.0))
    assert v["drop"] == 0.0 and v["agreement_with_fp32"] == 95.0
    assert v["per_class_drop"]["c0"]["drop"] == 25.0 and "c0" in v["classes_unresolved"]
    assert v["passed"] and v["classes_failed"] == [] and not v["resolved"]
    assert "cannot resolve --max-drop 1" in v["reason"]
    big = np.array([0] * 200 + [1] * 200)
    ref2, cand2 = np.eye(2)[big], np.eye(2)[big]
    cand2[:60] = [0, 1]  # class a loses 30 points of 200 samples
    v2 = judge(ref2, cand2, big, ["a", "b"], Gate(max_drop=30.0, max_class_drop=3.0))
    assert not v2["passed"] and v2["classes_failed"] == ["a"] and v2["decided_by"] == "labels (class)"
    assert "class a loses at least" in v2["reason"]


def test_openvino_int8_and_fp16(optical_bundle, tmp_path):
    b = _copy(optical_bundle, tmp_path)
    cal, val = _sets(b)
    rec = quantize_bundle(b, backend="openvino", calib_data=cal, val_data=val, max_drop=5.0).to_dict()
    assert rec["accepted"] == "int8-nncf-ptq" and rec["passed"]
    rec16 = quantize_bundle(b, backend="onnxruntime", precision="fp16", val_data=val).to_dict()
    assert rec16["accepted"] == "fp16" and rec16["calibration"] is None
    m = open_bundle(b).manifest
    assert {"onnx-fp32", "openvino-int8", "onnx-fp16"} == {a.id for a in m.artifacts}
    assert set(m.quantization) == {"openvino:int8", "onnxruntime:fp16"}
    xml = (b / m.artifact("openvino-int8").path).read_text()
    assert "FakeQuantize" in xml or "FakeConvert" in xml or "u8" in xml


def test_synthetic_data_path_end_to_end(optical_bundle, tmp_path):
    """Calibration and gate read through the data layer (synthetic default, recorded as such)."""
    b = _copy(optical_bundle, tmp_path)
    rec = quantize_bundle(b, calib_size=16, max_drop=100.0).to_dict()
    assert rec["calibration"]["split"] == "train" and rec["calibration"]["synthetic"]
    assert rec["calibration"]["stratified"] and rec["gate"]["synthetic"]
    doc = json.loads((b / "manifest.json").read_text())
    assert doc["quantization"]["onnxruntime:int8"]["calibration"]["sha256"]


def test_gate_refuses_data_with_another_class_list(optical_bundle, tmp_path):
    """Labels are indices: a dataset with other classes would be scored against the wrong ones."""
    b = _copy(optical_bundle, tmp_path)
    before = (b / "manifest.json").read_bytes()
    with pytest.raises(QuantizationError, match="has classes Water, Forest; the bundle was trained on"):
        quantize_bundle(b, calib_data="synthetic:num_classes=2", calib_size=8, max_drop=100.0)
    assert (b / "manifest.json").read_bytes() == before
