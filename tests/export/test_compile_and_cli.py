"""compile (OpenVINO here; TensorRT where it exists) and the export-stage CLI commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from cmkd_edge.export.compile import compile_bundle
from cmkd_edge.export.targets.tensorrt import available
from cmkd_edge.runtime.contract.bundle import open_bundle

from cmkd_edge.cli import main
from cmkd_edge.errors import ExportValidationError

TRT_OK, TRT_WHY = available()


def test_openvino_ir_fp32_and_fp16(optical_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(optical_bundle, b)
    arts = compile_bundle(b, target="openvino", precisions=("fp32", "fp16"),
                          cache_dir=tmp_path / "ovcache")
    assert [c.artifact.id for c in arts] == ["openvino-ir-fp32", "openvino-ir-fp16"]
    m = open_bundle(b).manifest
    a = m.artifact("openvino-ir-fp16")
    assert a.files == ("openvino/model.ir-fp16.xml", "openvino/model.ir-fp16.bin")
    assert a.extra["check"]["compiled_on"] == "CPU"


def test_int8_compile_needs_the_qdq_model(optical_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(optical_bundle, b)
    with pytest.raises(ExportValidationError, match="onnx-int8"):
        compile_bundle(b, target="openvino", precisions=("int8",))
    assert open_bundle(b).manifest.files.keys() == {"model.onnx"}


@pytest.mark.tensorrt
@pytest.mark.skipif(not TRT_OK, reason=f"TensorRT engine build impossible here: {TRT_WHY}")
def test_tensorrt_fp16_engine_with_fingerprint(optical_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(optical_bundle, b)
    (art,) = compile_bundle(b, target="tensorrt", precisions=("fp16",), max_batch=4,
                            timing_cache=tmp_path / "trt.cache")
    assert art["fingerprint"]["tensorrt"] and art["fingerprint"]["compute_capability"]
    assert (tmp_path / "trt.cache").exists()


def test_tensorrt_unavailable_is_a_clear_error(optical_bundle, tmp_path):
    if TRT_OK:
        pytest.skip("tensorrt and a GPU are present")
    b = tmp_path / "b"
    shutil.copytree(optical_bundle, b)
    r = CliRunner().invoke(main, ["compile", str(b), "--target", "tensorrt"])
    assert r.exit_code != 0 and "TensorRT" in r.output and "Traceback" not in r.output
    assert open_bundle(b).manifest.files.keys() == {"model.onnx"}


def test_bundle_verify_inspect_pack(optical_bundle, tmp_path):
    run = CliRunner()
    r = run.invoke(main, ["bundle", str(optical_bundle), "--verify"])
    assert r.exit_code == 0 and "ok" in r.output
    r = run.invoke(main, ["bundle", str(optical_bundle), "--inspect"])
    assert r.exit_code == 0 and "onnx-fp32" in r.output
    r = run.invoke(main, ["bundle", str(optical_bundle), "--inspect", "--json"])
    assert json.loads(r.output)["schema_version"] == 1
    out = tmp_path / "b.tar.gz"
    r = run.invoke(main, ["bundle", str(optical_bundle), "--pack", str(out)])
    assert r.exit_code == 0 and out.exists()
    r = run.invoke(main, ["bundle", str(out), "--verify", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["ok"]


def test_bundle_verify_tampered_is_one_line_error(optical_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(optical_bundle, b)
    (b / "model.onnx").write_bytes(b"tampered")
    r = CliRunner().invoke(main, ["bundle", str(b), "--verify"])
    assert r.exit_code == 2 and "sha256" in r.output and "Traceback" not in r.output


def test_quantize_cli_refuses_test_split(optical_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(optical_bundle, b)
    r = CliRunner().invoke(main, ["quantize", str(b), "--calib-split", "test"])
    assert r.exit_code == 2 and "refused" in r.output


def test_export_cli_json(optical_ckpt, tmp_path):
    r = CliRunner().invoke(main, ["export", str(optical_ckpt), "--out", str(tmp_path / "b"),
                                  "--opset", "17", "--samples", "4", "--data", "/nonexistent",
                                  "--input-hw", "32,32",
                                  "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output)
    assert rec["opset"] == 17 and rec["exporter"] == "legacy"


@pytest.mark.parametrize("cmd", ["export", "quantize", "compile", "bundle"])
def test_help_is_light(cmd):
    """--help works and never imports torch, onnx or nncf (CLI start-up stays fast)."""
    code = ("import sys; from click.testing import CliRunner; from cmkd_edge.cli import main;"
            f"r = CliRunner().invoke(main, ['{cmd}', '--help']); assert r.exit_code == 0, r.output;"
            "heavy = [m for m in ('torch', 'onnx', 'nncf', 'openvino') if m in sys.modules];"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
