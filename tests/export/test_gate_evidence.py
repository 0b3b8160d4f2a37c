"""The gate decides only what its data can resolve (issue 9): paired interval, agreement, unresolved."""

from __future__ import annotations

import numpy as np
from cmkd_edge.export.quantize.gate import Gate, judge
from cmkd_edge.runtime.metrics import clopper_pearson, paired_difference


def _logits(pred: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[pred].astype(np.float32)


def test_paired_difference_exact_and_bootstrap():
    a = np.ones(40, bool)
    zero = paired_difference(a, a)
    # no flips in 40 samples still allows a drop of ~10 points: the interval must say so
    assert zero["difference"] == 0 and zero["lo"] < -0.08 and zero["hi"] > 0.08
    assert not zero["resolved_sign"]
    b = np.zeros(2000, bool)
    b[:1900] = True
    c = b.copy()
    c[:200] = False  # 200 of 2000 lost: clearly resolved
    d = paired_difference(b, c)
    assert d["lost"] == 200 and d["gained"] == 0 and d["hi"] < 0 and d["resolved_sign"]
    assert abs(d["difference"] + 0.1) < 1e-12
    lo, hi = clopper_pearson(5, 10, 0.05)
    assert abs(lo - 0.187086) < 1e-4 and abs(hi - 0.812914) < 1e-4
    boot = paired_difference(b.astype(float), c.astype(float), n_boot=300)
    assert boot["method"] == "bootstrap" and boot["lo"] <= -0.1 <= boot["hi"] < 0
    same = paired_difference(np.ones(13), np.ones(13), n_boot=50)  # identical outputs, 13 samples
    assert same["hi"] > 0.2 and same["lo"] < -0.2 and not same["resolved_sign"]


def test_small_split_cannot_resolve_and_says_so():
    """40 labelled patches: a 1-point limit is below what the data can tell."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 40)
    ref = _logits(y, 4)
    cand_pred = y.copy()
    v = judge(ref, _logits(cand_pred, 4), y, list("abcd"), Gate(max_drop=1.0))
    assert not v["resolved"] and v["decided_by"] == "point estimate" and v["passed"]
    assert "cannot resolve --max-drop 1" in v["reason"]


def test_agreement_on_more_data_resolves_what_labels_cannot():
    """Zero disagreements on 2,000 unlabelled inputs bound the drop below 1 point."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 40)
    ref = _logits(y, 4)
    extra = _logits(rng.integers(0, 4, 2000), 4)
    v = judge(ref, ref.copy(), y, list("abcd"), Gate(max_drop=1.0), extra=(extra, extra.copy()))
    assert v["passed"] and v["resolved"] and v["decided_by"] == "agreement"
    assert v["agreement"]["disagreement_upper"] < 1.0 and "disagrees with FP32 on 0 of 2040" in v["reason"]
    flipped = extra.copy()
    flipped[:100] = np.roll(flipped[:100], 1, axis=1)  # 5 % disagreement: no longer a proof
    v2 = judge(ref, ref.copy(), y, list("abcd"), Gate(max_drop=1.0), extra=(extra, flipped))
    assert v2["decided_by"] == "point estimate" and not v2["resolved"]


def test_large_split_resolves_a_real_loss():
    y = np.repeat(np.arange(4), 500)
    cand = y.copy()
    cand[::25] = (cand[::25] + 1) % 4  # 4 points lost
    v = judge(_logits(y, 4), _logits(cand, 4), y, list("abcd"), Gate(max_drop=1.0))
    assert not v["passed"] and v["decided_by"] == "labels" and v["drop_lo"] > 1.0
    assert "loses at least" in v["reason"] and "n=2000" in v["reason"]


def test_multilabel_gate_uses_micro_f1_and_class_ap():
    rng = np.random.default_rng(2)
    t = (rng.random((300, 5)) < 0.3).astype(np.float32)
    ref = np.where(t > 0, 3.0, -3.0) + rng.normal(0, 0.5, t.shape)
    v = judge(ref, ref + 0.01, t, list("abcde"), Gate(max_drop=2.0))
    assert v["metric"] == "micro_f1" and v["passed"] and "top1" not in v
    assert set(v["per_class_drop"]) == set("abcde")
    bad = ref.copy()
    bad[:, 0] = rng.normal(0, 1, 300)  # class a's scores become noise
    v2 = judge(ref, bad, t, list("abcde"), Gate(max_drop=2.0, max_class_drop=5.0))
    assert not v2["passed"] and "a" in v2["classes_failed"]
