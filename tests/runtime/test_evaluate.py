"""evaluate_bundle: every artifact x backend scored through the runtime Classifier, paired to FP32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cmkd_edge.runtime import Classifier
from cmkd_edge.runtime.evaluate import evaluate_bundle
from cmkd_edge.runtime.metrics import paired_difference

from cmkd_edge.errors import DataError


def test_every_runnable_pair_is_measured_and_paired_with_fp32(int8_bundle: Path) -> None:
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 3000, (40, 13, 16, 16)).astype(np.float32)
    with Classifier.open(int8_bundle, backend="onnxruntime", artifact="onnx-fp32") as clf:
        ref = clf.predict(x)
    labels = ref.argmax(1).copy()
    labels[:5] = (labels[:5] + 1) % ref.shape[1]  # FP32 is right on 35 of 40
    doc = evaluate_bundle(int8_bundle, x, labels, split="test", latency_iterations=3)
    assert doc["reference"] == {"backend": "onnxruntime", "artifact": "onnx-fp32"}
    rows = {(r["backend"], r["artifact"]): r for r in doc["rows"]}
    assert ("onnxruntime", "onnx-int8") in rows and rows[("onnxruntime", "onnx-fp32")]["accuracy"] == 35 / 40
    for (backend, art), row in rows.items():
        with Classifier.open(int8_bundle, backend=backend, artifact=art) as clf:
            pred = clf.predict(x).argmax(1)
        assert row["accuracy"] == pytest.approx(float((pred == labels).mean()))  # measured, not copied
        d = paired_difference(ref.argmax(1) == labels, pred == labels)
        assert row["drop"] == pytest.approx(-100 * d["difference"], abs=1e-3)
        assert row["drop_lo"] <= row["drop"] <= row["drop_hi"] and row["n"] == 40
        assert row["split"] == "test" and row["p50_ms_batch1"] > 0
        assert row["agreement_with_fp32"] == pytest.approx(100 * float((pred == ref.argmax(1)).mean()), abs=1e-3)


def test_labels_that_do_not_fit_are_a_data_error(int8_bundle: Path) -> None:
    x = np.full((4, 13, 16, 16), 1000, np.float32)
    with pytest.raises(DataError, match="4 inputs and 3 labels"):
        evaluate_bundle(int8_bundle, x, np.zeros(3, int), split="test", latency_iterations=0)
    with pytest.raises(DataError, match="class indices 0..3"):
        evaluate_bundle(int8_bundle, x, np.full(4, 9), split="test", latency_iterations=0)
