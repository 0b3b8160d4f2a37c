"""TensorRT: fingerprint logic without a GPU; the runner itself only where tensorrt and a GPU exist."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cmkd_edge.runtime.backends import available
from cmkd_edge.runtime.backends.fingerprint import check_fingerprint

from cmkd_edge.errors import BundleError

ORIN = {"tensorrt": "10.3.0.30", "gpu": "Orin", "compute_capability": "8.7"}


@pytest.mark.parametrize("actual, ok, text", [
    (ORIN, True, None),
    ({**ORIN, "tensorrt": "10.3.0.26"}, True, None),                    # build number only
    ({**ORIN, "compute_capability": (8, 7)}, True, None),
    ({**ORIN, "tensorrt": "10.4.0"}, False, "TensorRT 10.3.0, this device has 10.4.0"),
    ({**ORIN, "tensorrt": ""}, False, "has none"),
    ({**ORIN, "compute_capability": "8.6"}, False, "compute capability 8.7, this GPU is 8.6"),
    ({**ORIN, "compute_capability": "sm_87"}, True, None),
])
def test_fingerprint_errors(actual: dict, ok: bool, text: str | None) -> None:
    check = check_fingerprint(ORIN, actual)
    assert check.ok is ok
    if text:
        assert any(text in e for e in check.errors)


def test_fingerprint_gpu_name_is_a_warning_and_missing_is_an_error() -> None:
    check = check_fingerprint(ORIN, {**ORIN, "gpu": "Jetson AGX Orin 64GB"})
    assert check.ok and "running on" in check.warnings[0]
    assert not check_fingerprint(None, ORIN).ok
    assert not check_fingerprint({"gpu": "Orin"}, ORIN).ok


def test_plan_without_fingerprint_refused_by_manifest(bundle_copy: Path) -> None:
    from cmkd_edge.runtime.contract.manifest import Manifest

    d = json.loads((bundle_copy / "manifest.json").read_text())
    d["artifacts"].append({"id": "trt-fp16", "path": "model.onnx", "format": "tensorrt-plan",
                           "precision": "fp16", "backend": "tensorrt", "files": ["model.onnx"]})
    with pytest.raises(BundleError, match="fingerprint"):
        Manifest.from_dict(d)


def test_auto_skips_tensorrt_without_gpu(bundle_copy: Path) -> None:
    """A bundle with a TensorRT plan still opens on a CPU-only device (auto falls through)."""
    from cmkd_edge.runtime.classifier import Classifier
    from cmkd_edge.runtime.contract.manifest import Manifest, read_manifest, write_manifest

    (bundle_copy / "model.plan").write_bytes(b"\x00fake plan")
    d = read_manifest(bundle_copy).to_dict()
    d["artifacts"].insert(0, {"id": "trt-fp16", "path": "model.plan", "format": "tensorrt-plan",
                              "precision": "fp16", "backend": "tensorrt", "files": ["model.plan"],
                              "fingerprint": ORIN})
    write_manifest(bundle_copy, Manifest.from_dict(d))
    if available("tensorrt"):
        pytest.skip("a GPU with TensorRT is present: auto would try the plan")
    with Classifier.open(bundle_copy) as clf:
        assert clf.backend != "tensorrt"


@pytest.mark.tensorrt
@pytest.mark.skipif(not available("tensorrt"), reason="needs the tensorrt package and an NVIDIA GPU "
                    "(not installable on this machine: NVIDIA's package host is unreachable)")
def test_tensorrt_runner_batch_1_and_n(bundle_dir: Path) -> None:  # pragma: no cover - GPU only
    from cmkd_edge.runtime.classifier import Classifier

    x = np.random.default_rng(0).uniform(0, 10000, (9, 13, 16, 16)).astype(np.float32)
    with Classifier.open(bundle_dir, backend="onnxruntime") as ref, \
            Classifier.open(bundle_dir, backend="tensorrt", precision="fp32", rebuild=True) as trt:
        np.testing.assert_allclose(trt.predict(x[:1]), ref.predict(x[:1]), atol=1e-3)
        np.testing.assert_allclose(trt.predict(x), ref.predict(x), atol=1e-3)
