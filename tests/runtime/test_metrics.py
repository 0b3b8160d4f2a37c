"""Metrics agree with scikit-learn where it has them, and ECE with a hand-computed case."""

from __future__ import annotations

import numpy as np
import pytest
from cmkd_edge.runtime import metrics as M

sk = pytest.importorskip("sklearn.metrics")


def _random_probs(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    z = rng.normal(size=(n, k)) * 2
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_multiclass_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    probs = _random_probs(rng, 50, 4)
    y = rng.integers(0, 4, 50)
    r = M.multiclass_report(probs, y, ["a", "b", "c", "d"])
    pred = probs.argmax(1)
    assert r["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert r["macro_f1"] == pytest.approx(sk.f1_score(y, pred, average="macro"))
    assert r["confusion_matrix"] == sk.confusion_matrix(y, pred, labels=range(4)).tolist()
    recall = sk.recall_score(y, pred, average=None, labels=range(4))
    assert list(r["per_class_accuracy"].values()) == pytest.approx(list(recall))


def test_absent_class_has_no_accuracy() -> None:
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    r = M.multiclass_report(probs, np.array([0, 1]))
    assert r["per_class_accuracy"]["2"] is None
    assert r["accuracy"] == 1.0 and r["macro_f1"] == 1.0


def test_ece_by_hand() -> None:
    # two samples at confidence 0.9 (one right), two at 0.6 (both right)
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 0, 0, 1])
    # bin (0.867, 0.933]: acc 0.5 conf 0.9 -> 0.4 * 0.5 ; bin (0.533, 0.6]: acc 1, conf 0.6 -> 0.4 * 0.5
    assert M.expected_calibration_error(probs, y) == pytest.approx(0.4)
    perfect = np.eye(3)
    assert M.expected_calibration_error(perfect, np.arange(3)) == pytest.approx(0.0)


def test_multilabel_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    probs = rng.uniform(size=(40, 5))
    targets = (rng.uniform(size=(40, 5)) < 0.4).astype(np.float32)
    targets[:, 4] = 0  # a class without positives: AP undefined, left out of mAP
    r = M.multilabel_report(probs, targets)
    pred = probs >= 0.5
    assert r["micro_f1"] == pytest.approx(sk.f1_score(targets, pred, average="micro"))
    aps = [sk.average_precision_score(targets[:, j], probs[:, j]) for j in range(4)]
    assert r["map"] == pytest.approx(np.mean(aps))
    assert r["per_class_ap"]["4"] is None
    assert M.scalars(r).keys() == {"map", "micro_f1", "macro_f1"}


def test_require_class_names_refuses_another_list_or_task() -> None:
    from cmkd_edge.errors import CheckpointError, QuantizationError

    M.require_class_names(["a", "b"], ("a", "b"), CheckpointError, "x")  # same list, any sequence type
    M.require_class_names(None, ["a"], CheckpointError, "x")  # unknown: not checked
    with pytest.raises(QuantizationError, match=r"^data \{1\} has classes b, a; want a, b$") as info:
        M.require_class_names(["b", "a"], ["a", "b"], QuantizationError, "data {1} has classes {got}; want {want}",
                              "use the right data")
    assert info.value.hint == "use the right data"
    with pytest.raises(CheckpointError, match="teacher classes"):
        M.require_class_names(["a"], ["a"], CheckpointError, "teacher classes ({got})",
                              tasks=("multilabel", "multiclass"))
