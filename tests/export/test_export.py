"""export: preprocessing in the graph equals the numpy reference; parity; checks; atomic bundle."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cmkd_edge.export.onnx import onnxruntime_maxima, preprocessing_nodes
from cmkd_edge.export.parity import compare_logits
from cmkd_edge.export.student import export_checkpoint
from cmkd_edge.runtime.contract.bundle import open_bundle
from cmkd_edge.runtime.contract.specs import PreprocessSpec
from onnx.utils import Extractor

from cmkd_edge.errors import ExportValidationError
from tests.export.export_helpers import raw_batch


def _graph_preprocessing(model_path, x):
    """Run the shipped graph up to the first Conv's input: the tensor the network body sees."""
    model = onnx.load(str(model_path))
    first = next(n for n in model.graph.node if n.op_type == "Conv")
    sub = Extractor(model).extract_model([model.graph.input[0].name], [first.input[0]])
    sess = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_bundle_manifest_and_parity(optical_bundle):
    b = open_bundle(optical_bundle)  # verifies every sha256
    m = b.manifest.to_dict()
    assert m["schema_version"] == 1
    assert m["input"]["band_names"][3] == "B04" and m["input"]["shape"] == [None, 13, 32, 32]
    assert m["preprocess"]["in_graph"] is True and m["preprocess"]["select"] == [3, 2, 1]
    art = b.manifest.artifact("onnx-fp32")
    assert art.opset == 18 and art.ir_version <= onnxruntime_maxima()["max_ir_version"]
    rec = m["provenance"]["export"]
    assert rec["exporter"] == "dynamo" and rec["loads"]["onnxruntime"] and rec["loads"]["openvino"]
    assert rec["parity"]["max_abs_diff"] <= 1e-4 and rec["parity"]["top1_identical"]
    assert rec["parity"]["batches"] == [1, 4] and not rec["parity"]["failed"]
    assert len(m["provenance"]["student_checkpoint_sha256"]) == 64
    assert set(m["files"]) == {"model.onnx"}


def test_in_graph_preprocessing_equals_numpy_reference(optical_bundle):
    spec = json.loads((optical_bundle / "manifest.json").read_text())["preprocess"]
    x = raw_batch(3, hw=32, seed=5)
    x[0, 3, 0, 0] = 30000.0  # above the clip
    np.testing.assert_allclose(_graph_preprocessing(optical_bundle / "model.onnx", x),
                               PreprocessSpec.from_dict(spec).apply(x), rtol=1e-5, atol=1e-5)


def test_sar_linear_to_db_in_graph(sar_ckpt, tmp_path):
    out = export_checkpoint(sar_ckpt, tmp_path / "sar", samples=4, batch=2, hw=(16, 16),
                            data="/nonexistent")
    spec = json.loads((out / "manifest.json").read_text())["preprocess"]
    assert spec["to_db"] and spec["source_units"] == "linear"
    x = raw_batch(2, sar=True, hw=16)
    x[0, 0, :2, :2] = 0.0  # zero power: floor at 1e-10 -> -100 dB -> clipped to -50
    got = _graph_preprocessing(out / "model.onnx", x)
    np.testing.assert_allclose(got, PreprocessSpec.from_dict(spec).apply(x), rtol=1e-4, atol=1e-4)
    assert np.isfinite(got).all()


def test_preprocessing_nodes_are_found(optical_bundle):
    names = preprocessing_nodes(onnx.load(str(optical_bundle / "model.onnx")))
    assert names and all("Conv" not in n for n in names)


def test_compare_logits_reports_each_problem():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    assert compare_logits(ref, ref + 1e-6, "ok")["ok"]
    assert "max abs diff" in compare_logits(ref, ref + 1e-2, "far")["problem"]
    # the allowance grows with the logits' size (float32 rounding), not enough to hide a bug
    big = ref * 30.0  # a confident net: tolerance 1e-4 + 30 x 1e-5
    assert compare_logits(big, big + 1.5e-4, "confident")["ok"]
    assert not compare_logits(big, big + 1e-2, "confident, off")["ok"]
    assert "top-1" in compare_logits(ref, ref[:, ::-1] * 1e-5 + ref * 0, "flip", atol=1.0)["problem"]


def test_failed_export_leaves_previous_bundle_intact(optical_bundle, optical_ckpt, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(optical_bundle, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(ExportValidationError, match="opset"):
        export_checkpoint(optical_ckpt, target, opset=17, exporter="dynamo", samples=4, batch=2,
                          hw=(32, 32), data="/nonexistent", force=True)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no staging left behind


def test_legacy_exporter_honours_low_opset(optical_ckpt, tmp_path):
    out = export_checkpoint(optical_ckpt, tmp_path / "b17", opset=17, samples=4, batch=2,
                            hw=(32, 32), data="/nonexistent")
    m = open_bundle(out).manifest
    assert m.artifact("onnx-fp32").opset == 17
    assert m.provenance.export.exporter == "legacy"
