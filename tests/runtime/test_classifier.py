"""Classifier: artifact choice, predictions across backends, threads, batch splitting, validation."""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from bundle_factory import make_bundle
from cmkd_edge.runtime.backends import BACKENDS, available
from cmkd_edge.runtime.classifier import Classifier, activate, select_artifacts
from cmkd_edge.runtime.contract.manifest import Manifest, read_manifest
from cmkd_edge.runtime.contract.validate import UnitsWarning, validate_input

from cmkd_edge.errors import BackendUnavailableError, BundleError, InputMismatchError, UnknownNameError

RNG = np.random.default_rng(42)
X = RNG.uniform(0, 10000, (7, 13, 16, 16)).astype(np.float32)
needs_openvino = pytest.mark.skipif(not available("openvino"), reason="openvino not installed")


def _manifest_with(bundle_dir: Path, **changes) -> Manifest:
    d = read_manifest(bundle_dir).to_dict()
    d.update(changes)
    return Manifest.from_dict(d)


def _ids(pairs) -> list[str]:
    return [f"{b}:{a.id}" for b, a in pairs]


def test_selection_order(int8_bundle: Path, bundle_dir: Path) -> None:
    m = read_manifest(bundle_dir)
    assert _ids(select_artifacts(m, backends=["openvino", "onnxruntime"]))[:2] == [
        "openvino:openvino-fp32", "onnxruntime:onnx-fp32"]
    assert _ids(select_artifacts(m, backends=["onnxruntime"])) == ["onnxruntime:onnx-fp32"]
    m8 = read_manifest(int8_bundle)
    # a gated INT8 beats FP32, and native beats foreign (ORT's U8S8 QDQ stays on ORT)
    assert _ids(select_artifacts(m8, backends=["openvino", "onnxruntime"]))[0] == "onnxruntime:onnx-int8"
    assert _ids(select_artifacts(m8, "openvino", backends=["openvino"]))[0] == "openvino:onnx-int8"
    # an INT8 artifact whose gate failed is a last resort only
    d = m8.to_dict()
    d["artifacts"][1]["gate_passed"] = False
    assert _ids(select_artifacts(Manifest.from_dict(d), backends=["onnxruntime"])) == [
        "onnxruntime:onnx-fp32", "onnxruntime:onnx-int8"]
    # ... and so is one with no gate record, whatever the quantization section says
    d["artifacts"][1]["gate_passed"] = None
    d["quantization"] = {"onnxruntime:int8": {"accepted": "int8"}}
    assert _ids(select_artifacts(Manifest.from_dict(d), backends=["onnxruntime"])) == [
        "onnxruntime:onnx-fp32", "onnxruntime:onnx-int8"]
    # TensorRT (GPU) comes first, but only builds from ONNX when rebuild=True
    assert all(b != "tensorrt" for b, _ in select_artifacts(m, backends=["tensorrt", "onnxruntime"]))
    assert _ids(select_artifacts(m, backends=["tensorrt", "onnxruntime"], rebuild=True))[0] == \
        "tensorrt:onnx-fp32"


def test_selection_errors(bundle_dir: Path) -> None:
    m = read_manifest(bundle_dir)
    with pytest.raises(BundleError, match="no artifact .* 'int8'"):
        select_artifacts(m, precision="int8", backends=["onnxruntime"])
    with pytest.raises(UnknownNameError, match="tflite") as err:
        select_artifacts(m, backend="tflite")
    assert "onnxruntime" in err.value.one_line()
    with pytest.raises(BackendUnavailableError, match="tensorrt"):
        select_artifacts(m, backend="tensorrt", backends=["onnxruntime"])


def test_registry_is_lazy() -> None:
    assert BACKENDS.names() == ["onnxruntime", "openvino", "tensorrt"]


@pytest.mark.parametrize("backend", ["onnxruntime", pytest.param("openvino", marks=needs_openvino)])
def test_predict_matches_reference(bundle_dir: Path, backend: str) -> None:
    with Classifier.open(bundle_dir, backend="onnxruntime") as ref, \
            Classifier.open(bundle_dir, backend=backend, threads=1) as clf:
        p = clf.predict(X)
        assert p.shape == (7, 4) and p.dtype == np.float32
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(p, ref.predict(X), atol=1e-5)
        np.testing.assert_allclose(clf.predict(X[0]), p[:1], atol=1e-6)  # (C, H, W) accepted


def test_auto_uses_gated_int8(int8_bundle: Path) -> None:
    # the fixed order (probe off); measured selection is tests/runtime/test_speed_probe.py
    with Classifier.open(int8_bundle, probe=False) as clf:
        assert clf.precision == "int8"
        with Classifier.open(int8_bundle, precision="fp32") as ref:
            assert np.abs(clf.predict(X) - ref.predict(X)).max() < 0.1  # quantized, close


@pytest.mark.parametrize("backend", ["onnxruntime", pytest.param("openvino", marks=needs_openvino)])
def test_eight_threads_equal_sequential(bundle_dir: Path, backend: str) -> None:
    inputs = [RNG.uniform(0, 10000, (1 + i % 3, 13, 16, 16)).astype(np.float32) for i in range(32)]
    with Classifier.open(bundle_dir, backend=backend) as clf:
        expected = [clf.predict(x) for x in inputs]
        results: list = [None] * len(inputs)
        barrier = threading.Barrier(8)

        def work(t: int) -> None:
            barrier.wait()
            for _ in range(3):
                for i in range(t, len(inputs), 8):
                    results[i] = clf.predict(inputs[i])

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_fixed_batch_model_is_split_and_padded(tmp_path: Path, bundle_dir: Path) -> None:
    root = make_bundle(tmp_path / "b1", batch=4, openvino=False)
    with Classifier.open(root) as clf, Classifier.open(bundle_dir, backend="onnxruntime") as ref:
        assert clf.describe()["max_batch"] == 4
        np.testing.assert_allclose(clf.predict(X), ref.predict(X), atol=1e-6)  # 7 = 4 + 3 (padded)


def test_manifest_max_batch_splits(bundle_copy: Path) -> None:
    d = json.loads((bundle_copy / "manifest.json").read_text())
    d["artifacts"][0]["max_batch"] = 2
    (bundle_copy / "manifest.json").write_text(json.dumps(d))
    with Classifier.open(bundle_copy, backend="onnxruntime") as clf:
        calls = []
        real = clf.runner.infer
        clf.runner.infer = lambda feeds, check=True: calls.append(len(feeds["input"])) or real(feeds, check)
        assert clf.predict(X).shape == (7, 4)
        assert calls == [2, 2, 2, 1]


def test_sigmoid_for_multilabel(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "ml", task="multilabel", openvino=False)
    with Classifier.open(root) as clf:
        p = clf.predict(X)
        logits = clf.infer_logits(X)
        np.testing.assert_allclose(p, 1 / (1 + np.exp(-logits)), rtol=1e-5)
    assert np.allclose(activate(np.array([[1000.0, 0.0]]), "softmax"), [[1, 0]])


# -- validation ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clf(bundle_dir: Path):
    with Classifier.open(bundle_dir, backend="onnxruntime") as c:
        yield c


@pytest.mark.parametrize("x, match", [
    (np.zeros((2, 12, 16, 16), np.float32), "12 bands, the model expects 13"),
    (np.zeros((2, 13, 32, 16), np.float32), "32x16 pixels, the model expects 16x16"),
    (np.zeros((13, 16), np.float32), "expected \\(N, C, H, W\\)"),
    (np.zeros((1, 13, 16, 16), np.complex64), "dtype complex64"),
    (np.full((1, 13, 16, 16), 1 << 30, np.int64), "float32's exact integer range"),
    (np.zeros((0, 13, 16, 16), np.float32), "empty batch"),
])
def test_validation_errors(clf: Classifier, x: np.ndarray, match: str) -> None:
    with pytest.raises(InputMismatchError, match=match):
        clf.predict(x)


def test_integer_sensor_dtypes_cast(clf: Classifier) -> None:
    u16 = np.rint(X).astype(np.uint16)
    np.testing.assert_allclose(clf.predict(u16), clf.predict(u16.astype(np.float32)), atol=1e-7)
    np.testing.assert_allclose(clf.predict(u16.astype(np.int32)), clf.predict(u16), atol=1e-7)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_reject_and_mask(clf: Classifier, bad: float) -> None:
    x = X.copy()
    x[2, 5, 3, 3] = bad
    with pytest.raises(InputMismatchError, match="1 of 7 patches contain NaN/Inf or nodata .* patch 2"):
        clf.predict(x)
    p = clf.predict(x, nodata_policy="mask")
    assert np.isnan(p[2]).all() and not np.isnan(np.delete(p, 2, axis=0)).any()
    np.testing.assert_allclose(np.delete(p, 2, axis=0), np.delete(clf.predict(X), 2, axis=0), atol=1e-6)
    assert np.isnan(x[2, 5, 3, 3]) or np.isinf(x[2, 5, 3, 3])  # caller's array untouched


def test_nodata_value(clf: Classifier) -> None:
    x = X.copy()
    x[4, :, 0, 0] = 0
    p = clf.predict(x, nodata_policy="mask", nodata=0)
    assert np.isnan(p[4]).all() and np.isfinite(np.delete(p, 4, axis=0)).all()
    with pytest.raises(InputMismatchError, match="nodata \\(0\\)"):
        clf.predict(x, nodata=0)


def test_nodata_masked_when_another_patch_has_nan(clf: Classifier, bundle_dir: Path) -> None:
    """A NaN anywhere in the batch makes min/max NaN; nodata patches must still be found."""
    x = X.copy()
    x[1, 3, 2, 2] = np.nan
    x[5, :, 7, 7] = -9999.0  # a nodata value below every real value of the batch
    v = validate_input(x, read_manifest(bundle_dir).input, nodata_policy="mask", nodata=-9999.0)
    assert v.valid is not None and v.valid.tolist() == [True, False, True, True, True, False, True]
    p = clf.predict(x, nodata_policy="mask", nodata=-9999.0)
    assert np.isnan(p[[1, 5]]).all() and np.isfinite(np.delete(p, [1, 5], axis=0)).all()
    with pytest.raises(InputMismatchError, match="2 of 7 patches"):
        clf.predict(x, nodata=-9999.0)


def test_units_warnings(bundle_dir: Path) -> None:
    spec = read_manifest(bundle_dir).input
    with pytest.warns(UnitsWarning, match="reflectance scaled 0-1"):
        validate_input(X / 10000.0, spec)
    sar = read_manifest(bundle_dir).to_dict()
    sar["input"].update(modality="sar", units="db", expected_range=[-50, 10])
    sar_spec = Manifest.from_dict(sar).input
    with pytest.warns(UnitsWarning, match="linear backscatter"):
        validate_input(np.abs(RNG.normal(0.05, 0.02, (1, 13, 16, 16))).astype(np.float32), sar_spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_input(X, spec)
        validate_input(RNG.uniform(-25, -5, (1, 13, 16, 16)).astype(np.float32), sar_spec)
