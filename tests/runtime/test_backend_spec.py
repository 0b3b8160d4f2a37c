"""Backends are declarations: adding one is one module plus one registration line.

The proof is a real extra backend (ONNX Runtime under another name, with a format of its own)
defined in this file and registered with one line: the listing, availability, the format tables,
manifest validation and the Classifier all pick it up, and no other file knows its name.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from cmkd_edge.runtime.backends import (
    ARTIFACT_FORMATS,
    AUTO_ORDER,
    BACKEND_NAMES,
    BACKENDS,
    FORMATS,
    BackendSpec,
    available,
    available_backends,
    backend_spec,
    specs,
)
from cmkd_edge.runtime.backends.onnxruntime import OrtRunner

from cmkd_edge.cli import main
from cmkd_edge.errors import BackendUnavailableError, BundleError, UnknownNameError


class CopyRunner(OrtRunner):
    """ONNX Runtime again, under another name: a real runner that loads the artifact's file."""

    name = "ort-copy"


COPY = BackendSpec(
    name="ort-copy", summary="ONNX Runtime under another name (test backend)", library="onnxruntime",
    extra=None, needs_gpu=False, formats=("onnx-copy", "onnx"), native_format="onnx-copy",
    auto_rank=15, runner=CopyRunner)


@pytest.fixture
def copy_backend() -> Iterator[BackendSpec]:
    BACKENDS.register_spec(COPY)  # the one registration line
    try:
        yield COPY
    finally:
        BACKENDS.unregister(COPY.name)


def _add_copy_artifact(bundle: Path) -> None:
    from cmkd_edge.runtime.contract.manifest import Manifest, read_manifest, write_manifest

    shutil.copy(bundle / "model.onnx", bundle / "model-copy.onnx")
    d = read_manifest(bundle).to_dict()
    d["artifacts"].append({"id": "copy-fp32", "path": "model-copy.onnx", "format": "onnx-copy",
                           "precision": "fp32", "backend": "ort-copy", "files": ["model-copy.onnx"]})
    write_manifest(bundle, Manifest.from_dict(d))


def test_declarations_derive_the_tables() -> None:
    assert BACKEND_NAMES == ("onnxruntime", "openvino", "tensorrt")
    assert tuple(AUTO_ORDER) == ("tensorrt", "openvino", "onnxruntime")
    assert dict(FORMATS) == {"onnxruntime": ("onnx",), "openvino": ("onnx", "openvino-ir"),
                             "tensorrt": ("tensorrt-plan", "onnx")}
    assert tuple(ARTIFACT_FORMATS) == ("onnx", "openvino-ir", "tensorrt-plan")
    for spec in specs():
        assert spec.runner.name == spec.name and spec.native_format in spec.formats
    assert backend_spec("tensorrt").needs_gpu and backend_spec("tensorrt").build_formats == ("onnx",)
    assert backend_spec("onnxruntime").extra is None
    assert backend_spec("openvino").compile_hook == "cmkd_edge.export.targets.openvino:compile_artifact"
    assert backend_spec("tensorrt").compile_hook == "cmkd_edge.export.targets.tensorrt:compile_artifact"
    with pytest.raises(UnknownNameError) as info:
        backend_spec("tflite")
    assert "choose one of: onnxruntime, openvino, tensorrt" in info.value.one_line()


def test_a_device_bound_format_needs_a_fingerprint() -> None:
    """The TensorRT rule lives in TensorRT's declaration (``device_bound``), not in the manifest."""
    from cmkd_edge.runtime.backends import DEVICE_BOUND_FORMATS
    from cmkd_edge.runtime.contract.manifest import Artifact

    assert tuple(DEVICE_BOUND_FORMATS) == ("tensorrt-plan",)
    plan = {"id": "tensorrt-fp16", "path": "m.plan", "format": "tensorrt-plan", "precision": "fp16",
            "backend": "tensorrt", "files": ["m.plan"]}
    with pytest.raises(BundleError, match=r"'artifacts\[tensorrt-fp16\]\.fingerprint' is missing"):
        Artifact.from_dict(plan)
    assert Artifact.from_dict({**plan, "fingerprint": {"gpu": "Orin"}}).fingerprint == {"gpu": "Orin"}


def test_a_malformed_declaration_is_refused() -> None:
    with pytest.raises(ValueError, match="native format"):
        BackendSpec(name="x", summary="", library="x", extra=None, needs_gpu=False, formats=("onnx",),
                    native_format="plan", auto_rank=1, runner=CopyRunner)


def test_unregistered_backend_is_refused_by_the_manifest(bundle_copy: Path) -> None:
    with pytest.raises(BundleError, match="format"):
        _add_copy_artifact(bundle_copy)
    assert not available("ort-copy") and "ort-copy" not in FORMATS


def test_registered_backend_is_picked_up_everywhere(copy_backend: BackendSpec, bundle_copy: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from cmkd_edge.runtime.classifier import Classifier
    from cmkd_edge.runtime.contract import manifest

    # the fixed order decides "auto" here: what is under test is registration, not the speed probe
    monkeypatch.setenv("CMKD_EDGE_SPEED_PROBE", "0")

    # listing (the summary comes from the declaration) and availability
    out = CliRunner().invoke(main, ["list", "backends", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["ort-copy"] == COPY.summary
    assert available("ort-copy") and available_backends().index("ort-copy") < available_backends().index(
        "onnxruntime")
    assert AUTO_ORDER.index("ort-copy") == AUTO_ORDER.index("tensorrt") + 1
    # format tables, the manifest's included
    assert FORMATS["ort-copy"] == ("onnx-copy", "onnx")
    assert "onnx-copy" in manifest.FORMATS and "ort-copy" in manifest.BACKEND_NAMES
    _add_copy_artifact(bundle_copy)
    # the Classifier: explicit, and auto (its native artifact, ranked before OpenVINO)
    x = np.random.default_rng(0).uniform(0, 10000, (3, 13, 16, 16)).astype(np.float32)
    with Classifier.open(bundle_copy, backend="onnxruntime") as ref:
        want = ref.predict(x)
    for backend in ("ort-copy", "auto"):  # the declared fixed order (probe off: two equal FP32s)
        with Classifier.open(bundle_copy, backend=backend, probe=False) as clf:
            assert (clf.backend, clf.artifact.id) == ("ort-copy", "copy-fp32")
            assert type(clf.runner) is CopyRunner
            np.testing.assert_allclose(clf.predict(x), want, atol=1e-6)
    # and its foreign-ONNX path, like any CPU backend
    with Classifier.open(bundle_copy, backend="ort-copy", artifact="onnx-fp32") as clf:
        assert clf.backend == "ort-copy" and type(clf.runner) is CopyRunner


def test_missing_library_names_the_extra(bundle_copy: Path) -> None:
    """TensorRT is not installable here: its hook fails with one line naming the extra."""
    from cmkd_edge.runtime.backends.tensorrt import TrtRunner
    from cmkd_edge.runtime.contract.bundle import open_bundle

    if backend_spec("tensorrt").installed():
        pytest.skip("tensorrt is installed here")
    b = open_bundle(bundle_copy)
    with pytest.raises(BackendUnavailableError) as info:
        TrtRunner.for_artifact(b, b.manifest.artifact("onnx-fp32"), rebuild=True)
    assert "pip install 'cmkd-edge[tensorrt]'" in info.value.one_line()
    assert backend_spec("openvino").install_hint == "pip install 'cmkd-edge[openvino]'"


def test_openvino_hook_pins_precision_and_cache(bundle_copy: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from cmkd_edge.runtime.backends.openvino import OpenVinoRunner
    from cmkd_edge.runtime.contract.bundle import open_bundle

    b = open_bundle(bundle_copy)
    fp32 = b.manifest.artifact("onnx-fp32")
    r = OpenVinoRunner.for_artifact(b, fp32, threads=2, cache_dir=tmp_path)
    assert r.options == {"device": "CPU", "precision_hint": "f32", "cache_dir": tmp_path / "openvino"}
    assert r.threads == 2 and r.path == b.path(fp32.path)
    fp16 = replace(fp32, precision="fp16")
    assert OpenVinoRunner.for_artifact(b, fp16, device="GPU").options["precision_hint"] == "f16"
    assert OpenVinoRunner.for_artifact(b, fp16).options["precision_hint"] == "f32"
    # a runner built without the hook (the quantization gate's, the IR check's) compiles in f32 too,
    # not in the bf16 OpenVINO picks by default on AVX512-BF16/AMX CPUs
    with OpenVinoRunner(b.path(fp32.path), threads=1, performance_hint=None) as plain:
        assert "float32" in plain.describe()["INFERENCE_PRECISION_HINT"]


def test_in_memory_model_runs_like_the_file(bundle_dir: Path) -> None:
    x = np.random.default_rng(1).uniform(0, 10000, (2, 13, 16, 16)).astype(np.float32)
    with OrtRunner(bundle_dir / "model.onnx", threads=1) as a, \
            OrtRunner.from_memory((bundle_dir / "model.onnx").read_bytes(), threads=1, optimize=False) as b:
        assert a.input_specs() == b.input_specs() and str(b.path) == "<in-memory model>"
        np.testing.assert_allclose(b.infer({"input": x})["logits"], a.infer({"input": x})["logits"],
                                   rtol=1e-5, atol=1e-5)


def test_listing_and_help_import_no_backend_library() -> None:
    code = ("import sys; from click.testing import CliRunner; from cmkd_edge.cli import main\n"
            "for args in (['--help'], ['classify', '--help'], ['profile', '--help'], ['list', 'backends']):\n"
            "    r = CliRunner().invoke(main, args); assert r.exit_code == 0, r.output\n"
            "libs = [m for m in ('onnxruntime', 'openvino', 'tensorrt', 'cuda') if m in sys.modules]\n"
            "assert not libs, libs")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
