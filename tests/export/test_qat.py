"""The int8-qat rung: torch.ao fake-quant fine-tuning with CE + KD, exported as the PTQ rungs' QDQ."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest
from cmkd_edge.export.quantize import quantize_bundle
from cmkd_edge.export.quantize.qat import QatConfig, QatPlan, prepare
from cmkd_edge.runtime.contract.bundle import open_bundle

from cmkd_edge.errors import QuantizationError
from tests.export.export_helpers import make_checkpoint


@pytest.fixture(scope="module")
def qat_case(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny depthwise student (mobilenetv2-tiny) and its bundle; synthetic training data."""
    from cmkd_edge.export.student import export_checkpoint

    d = tmp_path_factory.mktemp("qat")
    ckpt = make_checkpoint(d / "student.pt", arch="mobilenetv2-tiny", seed=2)
    # opset 17 = the legacy exporter: several times faster than dynamo here (the QAT rung uses the
    # bundle's own opset and exporter)
    bundle = export_checkpoint(ckpt, d / "bundle", samples=8, batch=4, hw=(32, 32),
                               data="/nonexistent", opset=17)
    return ckpt, bundle


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "b"))


def test_qat_alone_trains_exports_qdq_and_records(qat_case, tmp_path):
    ckpt, bundle = qat_case
    b = _copy(bundle, tmp_path)
    rec = quantize_bundle(b, backend="onnxruntime", calib_size=16, max_drop=100.0,
                          checkpoint=str(ckpt), qat_epochs=1, only_rungs=["int8-qat"]).to_dict()
    first = rec["rungs"][0]
    assert first["rung"] == "int8-qat" and "error" not in first, first.get("error")
    assert rec["accepted"] == "int8-qat" and rec["accepted_precision"] == "int8"
    qat = first["qat"]
    assert len(qat["epochs"]) == 1 and qat["epochs"][0]["total"] > 0
    assert qat["teacher"]["kind"].startswith("FP32 student")  # the checkpoint names no teacher
    assert qat["data"]["split"] == "train" and qat["data"]["n"] > 0
    art = open_bundle(b).manifest.artifact("onnx-int8")
    assert art.gate_passed and art.rung == "int8-qat"
    assert art.extra["qat"]["epochs"] == 1 and art.extra["qat"]["teacher"]["sha256"]
    model = onnx.load(str(b / art.path))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # the preprocessing (band selection + normalisation) is float: nothing before the first
    # QuantizeLinear reads an integer tensor
    first_q = ops.index("QuantizeLinear")
    assert "Gather" in ops[:first_q] or "Slice" in ops[:first_q] or first_q > 0
    # a second request (another backend, another staging copy) reuses this process's fine-tune
    from cmkd_edge.export.quantize import qat as qat_mod

    cached = len(qat_mod._CACHE)
    again = quantize_bundle(_copy(bundle, tmp_path / "again"), backend="onnxruntime",
                            calib_size=16, max_drop=100.0, checkpoint=str(ckpt), qat_epochs=1,
                            only_rungs=["int8-qat"]).to_dict()
    assert len(qat_mod._CACHE) == cached and again["rungs"][0]["qat"]["seconds"] == qat["seconds"]


def test_qat_missing_checkpoint_is_one_stated_reason(qat_case, tmp_path):
    _, bundle = qat_case
    b = _copy(bundle, tmp_path)
    rec = quantize_bundle(b, backend="onnxruntime", calib_size=16, max_drop=100.0,
                          only_rungs=["int8-qat"]).to_dict()
    first = rec["rungs"][0]
    assert first["rung"] == "int8-qat" and not first["passed"]
    assert "needs the student checkpoint" in first["error"] and "--checkpoint" in first["error"]
    assert "\n" not in first["error"]
    # without asking for it by name the rung is not offered, and the record says why
    rec = quantize_bundle(b, backend="onnxruntime", calib_size=16, max_drop=100.0).to_dict()
    assert "int8-qat" not in [r["rung"] for r in rec["rungs"]]
    assert "needs the student checkpoint" in rec["qat_not_offered"]


def test_qat_refuses_another_students_checkpoint(qat_case, tmp_path):
    _, bundle = qat_case
    other = make_checkpoint(tmp_path / "other.pt", arch="mobilenetv2-tiny", seed=5)
    with pytest.raises(QuantizationError, match="not the student this bundle was exported from"):
        quantize_bundle(_copy(bundle, tmp_path), backend="onnxruntime", calib_size=16,
                        checkpoint=str(other), only_rungs=["int8-qat"])


def test_fake_quant_keeps_preprocessing_float_and_quantizes_layers():
    import torch

    from cmkd_edge.models import build_model

    net = build_model("mobilenetv2-tiny", 3, 4, mean=[0.0] * 3, std=[1.0] * 3)
    q = prepare(net, {"activation": "QUInt8", "weight": "QInt8", "reduce_range": True})
    names = dict(q.named_modules())
    assert not hasattr(names["norm.0"], "activation_post_process")  # InputNorm stays float
    assert hasattr(names["norm.1"], "activation_post_process")  # the conv input is quantized
    fq = names["stem.0"].weight_fake_quant
    assert (fq.quant_min, fq.quant_max) == (-64, 63) and fq.qscheme == torch.per_channel_symmetric
    with pytest.raises(QuantizationError, match="qat-epochs"):
        QatConfig(epochs=0)
    _ = QatPlan  # resolve() is exercised through quantize_bundle above


@pytest.mark.parametrize("args, message", [
    (["--rung", "int8-bogus"], "unknown rung(s) int8-bogus"),
    (["--checkpoint", "/nonexistent/student.pt", "--rung", "int8-qat"], "--checkpoint /nonexistent"),
])
def test_quantize_cli_bad_qat_input_is_one_line(qat_case, tmp_path, args, message):
    from click.testing import CliRunner

    from cmkd_edge.cli import main

    _, bundle = qat_case
    b = _copy(bundle, tmp_path)
    res = CliRunner().invoke(main, ["quantize", str(b), "--calib-size", "16", *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert "Traceback" not in res.output


def test_kd_term_equals_the_trainers_kd_loss():
    import torch
    from cmkd_edge.export.quantize.qat import kd_term

    from cmkd_edge.distill.losses.kd import kd_loss

    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    assert torch.allclose(kd_term(s, t, 4.0, False), kd_loss(s, t, 4.0))
    # multi-label: same gradient as the Bernoulli KL (they differ by the teacher's entropy only)
    a = s.clone().requires_grad_(True)
    b = s.clone().requires_grad_(True)
    kd_term(a, t, 2.0, True).backward()
    (kd_loss(b, t, 2.0, multilabel=True) / s.shape[1]).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)
