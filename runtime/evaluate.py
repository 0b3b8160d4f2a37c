"""Score every artifact x backend of a bundle on labelled inputs, through the device's code path.

Why here, in the runtime: the accuracy a user trusts must be measured by the code a device runs
(:class:`~cmkd_edge.runtime.classifier.Classifier`: verification, input validation, the runner,
batch splitting), never copied from the manifest. This module takes arrays (raw sensor inputs and
labels), so it needs numpy and a backend only; the CLI reads a labelled *dataset* through the data
layer's numpy half (``cmkd_edge.export.samples.bundle_samples``: no torch, so a device checks its own
bundle), or arrays saved with keys ``x`` (N, C, H, W raw inputs) and ``labels`` (``--data FILE.npz``).

Every row is compared with the reference (the FP32 ONNX on ONNX Runtime when this device runs it,
else the first FP32 artifact) by paired outcomes on the same inputs
(:func:`~cmkd_edge.runtime.metrics.paired_difference`), and an interval that holds zero is reported
as "no measurable difference".
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cmkd_edge.errors import DataError

from .classifier import Classifier, activate
from .contract.bundle import Bundle, open_bundle
from .contract.records import ONNX_FP32
from .metrics import ECE_BINS, clopper_pearson, micro_f1, multiclass_report, multilabel_report, paired_difference


def _scores(task: str, probs: np.ndarray, labels: np.ndarray, names: list[str],
            thresholds: np.ndarray) -> dict[str, Any]:
    """The headline metric with its 95 % interval (``interval``, same scale), and per-class scores.

    Why an interval on every score: an accuracy on 40 samples and one on 2,425 print alike; the
    interval says which can be told apart. Multi-class: exact (Clopper-Pearson) for k of n right;
    multi-label micro-F1: a bootstrap over the samples (1,000 resamples, percentile).
    """
    if task == "multilabel":
        r = multilabel_report(probs, labels, names, threshold=thresholds)  # type: ignore[arg-type]
        return {"micro_f1": r["micro_f1"], "macro_f1": r["macro_f1"], "map": r["map"],
                "interval": _bootstrap_micro_f1(probs >= thresholds, labels.astype(bool)),
                "per_class_ap": r["per_class_ap"]}
    r = multiclass_report(probs, labels, names)
    k = int((probs.argmax(1) == labels).sum())
    return {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
            "interval": [round(v, 6) for v in clopper_pearson(k, len(labels), 0.05)],
            "per_class_accuracy": r["per_class_accuracy"], "confusion_matrix": r["confusion_matrix"],
            "ece": r["ece"], "calibration": _reliability(probs, labels)}


def _reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """The bins behind the ECE (equal-width top-probability bins): count, mean confidence and
    accuracy of each non-empty bin, for a reliability diagram."""
    conf, right = probs.max(1), probs.argmax(1) == labels
    # the bins expected_calibration_error uses (right-closed), so the diagram and the ECE agree
    idx = np.clip(np.searchsorted(np.linspace(0.0, 1.0, bins + 1), conf, side="left") - 1, 0, bins - 1)
    return [{"lo": b / bins, "hi": (b + 1) / bins, "n": int((idx == b).sum()),
             "confidence": round(float(conf[idx == b].mean()), 6),
             "accuracy": round(float(right[idx == b].mean()), 6)}
            for b in range(bins) if (idx == b).any()]


def _bootstrap_micro_f1(pred: np.ndarray, truth: np.ndarray, n_boot: int = 1000) -> list[float]:
    rng = np.random.default_rng(0)
    stats = [micro_f1(pred[rows], truth[rows]) for rows in
             (rng.integers(0, len(truth), len(truth)) for _ in range(n_boot))]
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return [round(float(lo), 6), round(float(hi), 6)]


def _paired(task: str, ref: np.ndarray, cand: np.ndarray, labels: np.ndarray,
            thresholds: np.ndarray) -> tuple[dict[str, Any], float]:
    """(paired difference of the headline metric, agreement with the reference in percent)."""
    if task == "multilabel":
        t = labels.astype(bool)
        dr, dc = ref >= thresholds, cand >= thresholds
        d = paired_difference(dr, dc, statistic=lambda x, rows: micro_f1(x, t[rows]), n_boot=1000)
        return d, float((dr == dc).all(1).mean() * 100.0) if len(t) else 0.0
    d = paired_difference(ref.argmax(1) == labels, cand.argmax(1) == labels)
    return d, float((ref.argmax(1) == cand.argmax(1)).mean() * 100.0) if len(labels) else 0.0


def _p50_batch1(clf: Classifier, x: np.ndarray, iterations: int) -> float:
    """Median wall time of ``predict`` on one input (the device's end-to-end call), in ms."""
    for i in range(min(3, len(x))):
        clf.predict(x[i:i + 1])
    times = []
    for i in range(iterations):
        j = i % len(x)
        t0 = time.perf_counter()
        clf.predict(x[j:j + 1])
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def evaluate_bundle(bundle: str | os.PathLike[str] | Bundle, x: np.ndarray, labels: np.ndarray, *,
                    split: str, data: str | None = None, threads: int | None = None,
                    latency_iterations: int = 30, batch: int = 32,
                    progress: Callable[[str], None] | None = None,
                    logits_out: dict[tuple[str, str], np.ndarray] | None = None) -> dict[str, Any]:
    """Score every artifact x backend this device can run on ``x`` (raw inputs) and ``labels``.

    Args:
        x: (N, C, H, W) raw sensor values, as a device feeds them.
        labels: (N,) class indices, or (N, K) multi-hot for a multi-label bundle.
        split, data: what the samples are (reported next to every number).
        latency_iterations: batch-1 calls timed per row (0 skips latency).
        logits_out: filled with each (backend, artifact)'s logits on ``x``, so a caller that judges
            them again (``evaluate --regate``) does not run every artifact twice.
    Returns:
        ``rows`` (one per artifact x backend: metrics, n, agreement with and drop against FP32 with
        its 95 % paired interval, p50 batch-1 ms, the gate the manifest records), ``reference``,
        ``skipped`` (pairs this device cannot run, with why) and ``notes``.
    Raises:
        DataError: inputs and labels disagree in length, or the labels do not fit the bundle.
    """
    from .profiler import not_runnable, runnable

    say = progress or (lambda _m: None)
    b = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    m = b.manifest
    names = list(m.class_names)
    x = np.asarray(x, dtype=np.float32)
    labels = np.asarray(labels)
    if len(x) != len(labels) or len(x) == 0:
        raise DataError(f"{len(x)} inputs and {len(labels)} labels: need the same, non-zero number")
    if m.task == "multilabel" and (labels.ndim != 2 or labels.shape[1] != len(names)):
        raise DataError(f"labels of shape {labels.shape} do not fit a multi-label bundle of "
                        f"{len(names)} classes (expected (N, {len(names)}) multi-hot)")
    if m.task == "multiclass" and (labels.ndim != 1 or labels.min() < 0 or labels.max() >= len(names)):
        raise DataError(f"labels must be class indices 0..{len(names) - 1} for this bundle")
    thresholds = m.output.threshold_array(len(names))
    pairs = runnable(b)
    probs: dict[tuple[str, str], np.ndarray] = {}
    latency: dict[tuple[str, str], float | None] = {}
    for backend, art_id in pairs:
        say(f"{art_id} on {backend}")
        with Classifier.open(b, backend=backend, artifact=art_id, threads=threads) as clf:
            z = np.concatenate([clf.logits(x[i:i + batch]) for i in range(0, len(x), batch)])
            probs[(backend, art_id)] = activate(z, m.output.activation)
            if logits_out is not None:
                logits_out[(backend, art_id)] = z
            latency[(backend, art_id)] = (_p50_batch1(clf, x, latency_iterations)
                                          if latency_iterations else None)
    fp32 = [p for p in pairs if m.artifact(p[1]).precision == "fp32"]
    ref_key = next((p for p in fp32 if p == ("onnxruntime", ONNX_FP32)), fp32[0] if fp32 else None)
    rows = []
    for key in pairs:
        backend, art_id = key
        art = m.artifact(art_id)
        row: dict[str, Any] = {"artifact": art_id, "backend": backend, "precision": art.precision,
                               "gate": {True: "pass", False: "fail", None: "-"}[art.gate_passed],
                               "split": split, "n": int(len(x)),
                               **_scores(m.task, probs[key], labels, names, thresholds)}
        if ref_key is not None:
            d, agree = _paired(m.task, probs[ref_key], probs[key], labels, thresholds)
            row.update(agreement_with_fp32=round(agree, 3), drop=round(-100 * d["difference"], 3) + 0.0,
                       drop_lo=round(-100 * d["hi"], 3) + 0.0, drop_hi=round(-100 * d["lo"], 3) + 0.0,
                       difference=("reference" if key == ref_key else
                                   "no measurable difference" if not d["resolved_sign"] else
                                   "measurably worse" if d["difference"] < 0 else "measurably better"))
        row["p50_ms_batch1"] = None if latency[key] is None else round(latency[key], 3)
        row["gate_note"] = _gate_note(m, art, row)
        rows.append(row)
    metric = "accuracy" if m.task == "multiclass" else "micro_f1"
    return {"bundle": str(b.source), "task": m.task,
            "split": split, "n": int(len(x)), "data": data, "metric": metric,
            "reference": None if ref_key is None else {"backend": ref_key[0], "artifact": ref_key[1]},
            "thresholds": [round(float(t), 4) for t in thresholds] if m.task == "multilabel" else None,
            "rows": rows, "skipped": not_runnable(b)}


def _gate_note(m: Any, art: Any, row: dict[str, Any]) -> str | None:
    """For an artifact the gate accepted: does this split's drop exceed the gate's limit, and did
    the gate say it could not resolve the limit? (issue 9: no silent loss.)"""
    if not art.gate_passed or "drop" not in row:
        return None
    gate = next((r.gate for r in (m.quantization or {}).values()
                 if r.accepted_precision == art.precision and r.gate is not None), None)
    limit = None if gate is None else gate.max_drop
    if gate is None or limit is None or row["drop"] <= limit + 1e-9:
        return None
    if gate.resolved is False:
        return (f"loses {row['drop']:.1f} points on {row['split']} (n={row['n']}), over the gate's "
                f"--max-drop {limit:g}; the gate said its data could not resolve that limit "
                f"({gate.split}, n={gate.n})")
    return (f"loses {row['drop']:.1f} points on {row['split']} (n={row['n']}), over the gate's "
            f"--max-drop {limit:g}; interval [{row['drop_lo']:+.1f}, {row['drop_hi']:+.1f}]"
            + (" holds the limit" if row["drop_lo"] <= limit else " excludes the limit: re-gate"))
