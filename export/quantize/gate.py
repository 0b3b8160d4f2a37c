"""The accuracy gate: a quantized candidate is accepted only on evidence its data can give.

Field notes, complaint 1: INT8 accuracy collapses silently; issue 9: a gate that decided on 40
validation patches passed a 4.2-point test loss under a 1-point limit, and another rejected a model
for one flipped patch in a class of 4. So the gate decides on *paired* outcomes (candidate and FP32
on the same inputs, ``runtime.metrics.paired_difference``) with a 95 % interval, in this order:

1. labels, per class: a class fails only when its interval lies wholly above ``class_limit``; a
   class too small to tell is listed as unresolved, never failed for one flip.
2. labels, overall: pass when the whole drop interval is within ``max_drop``, fail when it is wholly
   above it.
3. agreement (multi-class only): a candidate that disagrees with FP32 on a fraction ``d`` of inputs
   can lose at most ``d`` of top-1 accuracy, labels or not. So when the labels cannot decide, the
   exact upper bound of ``d`` on more in-distribution data (the validation split plus the training
   split outside the calibration sample) passes a candidate whose bound is within ``max_drop``.
4. otherwise the data cannot resolve ``max_drop``: the candidate is judged on the point estimate
   and the verdict says so (``resolved`` false, a plain ``reason``), so no artifact is accepted
   silently on evidence too thin to carry the limit.

Candidates run on the raw inputs by the backend they are meant for: its runtime runner, taken from
its declaration (``backend_spec(name).runner.for_check``), no torch. Multi-label models are gated
on micro-F1 at the per-class thresholds (paired bootstrap) and on per-class AP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from cmkd_edge.runtime.backends import backend_spec
from cmkd_edge.runtime.backends.base import Runner
from cmkd_edge.runtime.classifier import activate
from cmkd_edge.runtime.metrics import (
    accuracy,
    average_precision,
    clopper_pearson,
    micro_f1,
    paired_difference,
)

MIN_POSITIVES_AP = 5  # a class's AP is compared only with this many positives in the split


def logits(runner: Runner, x: np.ndarray, batch: int = 16) -> np.ndarray:
    """First output of ``runner`` on raw inputs ``x`` (N, C, H, W), ``batch`` rows at a time."""
    with runner:
        name, output = next(iter(runner.input_specs())), runner.output_names()[0]
        return np.concatenate([runner.infer({name: np.ascontiguousarray(x[i:i + batch])})[output]
                               for i in range(0, len(x), batch)])


def run(backend: str, model: Any, x: np.ndarray, batch: int = 16, **options: Any) -> np.ndarray:
    """Logits of ``model`` on raw inputs ``x``, run by ``backend``'s runtime runner as export's checks
    run it (``Runner.for_check``: one thread; OpenVINO on CPU in f32, what the device runs).

    Args:
        backend: a registered backend name (the quantizer's, or an artifact's).
        model: a file, or what the backend's runner takes in memory (ONNX bytes, an
            ``openvino.Model``).
        options: runner options, e.g. ONNX Runtime's ``optimize=False``: reference QDQ arithmetic
            for a target device whose integer kernels this host does not have
            (``device_profiles.gate_arithmetic``).
    """
    return logits(backend_spec(backend).runner.for_check(model, **options), x, batch)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """The gate's score in percent: top-1 accuracy, or micro-F1 at 0.5 for multi-hot labels
    (what NNCF's accuracy control and the ladder's rung ranking call)."""
    if labels.ndim == 2:
        return micro_f1(activate(logits, "sigmoid") >= 0.5, labels) * 100.0
    return accuracy(labels, logits.argmax(1)) * 100.0


@dataclass(frozen=True)
class Gate:
    """Thresholds in points (top-1 accuracy, or micro-F1 / AP for multi-label)."""

    max_drop: float = 1.0
    max_class_drop: float | None = None
    confidence: float = 0.95

    @property
    def class_limit(self) -> float:
        return 3.0 * self.max_drop if self.max_class_drop is None else self.max_class_drop


def _pts(d: dict[str, Any]) -> tuple[float, float, float]:
    """(drop, drop_lo, drop_hi) in points from a ``paired_difference`` of candidate - FP32."""
    return -100.0 * d["difference"], -100.0 * d["hi"], -100.0 * d["lo"]


def _r(v: float) -> float:
    return round(float(v), 3)


def _class_checks(ref_ok: np.ndarray, cand_ok: np.ndarray, y: np.ndarray, names: list[str],
                  gate: Gate) -> dict[str, Any]:
    """Per-class paired drop of top-1 (recall); which classes the data can judge against the limit."""
    drops, failed, unresolved = {}, [], []
    for c, name in enumerate(names):
        m = y == c
        if not m.any():
            continue
        d, lo, hi = _pts(paired_difference(ref_ok[m], cand_ok[m], gate.confidence))
        drops[name] = {"drop": _r(d), "lo": _r(lo), "hi": _r(hi), "n": int(m.sum())}
        if lo > gate.class_limit + 1e-9:
            failed.append(name)
        elif hi > gate.class_limit + 1e-9:
            unresolved.append(name)
    return {"per_class": drops, "failed": failed, "unresolved": unresolved}


def _ap_checks(p_ref: np.ndarray, p_cand: np.ndarray, t: np.ndarray, names: list[str],
               gate: Gate) -> dict[str, Any]:
    """Per-class AP drop (points), bootstrap interval, for classes with enough positives."""
    drops, failed, unresolved = {}, [], []
    for j, name in enumerate(names):
        pos = int(t[:, j].sum())
        if pos < MIN_POSITIVES_AP:
            unresolved.append(name)
            continue

        def ap(p: np.ndarray, rows: np.ndarray, j: int = j) -> float:
            v = average_precision(p[:, j], t[rows, j])
            return 0.0 if v is None else v

        d, lo, hi = _pts(paired_difference(p_ref, p_cand, gate.confidence, statistic=ap, n_boot=300))
        drops[name] = {"drop": _r(d), "lo": _r(lo), "hi": _r(hi), "n_positive": pos}
        if lo > gate.class_limit + 1e-9:
            failed.append(name)
        elif hi > gate.class_limit + 1e-9:
            unresolved.append(name)
    return {"per_class": drops, "failed": failed, "unresolved": unresolved}


def agreement(ref: np.ndarray, cand: np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """How often the candidate's top-1 differs from FP32's, with the exact upper bound (percent)."""
    n = int(len(ref))
    k = int((ref.argmax(1) != cand.argmax(1)).sum())
    upper = clopper_pearson(k, n, 1 - confidence)[1] * 100.0 if n else 100.0
    return {"n": n, "disagree": k, "agreement": _r(100.0 * (1 - k / n) if n else 0.0),
            "disagreement_upper": _r(upper)}


def judge_recorded(manifest: Any, record: Any, ref: np.ndarray, cand: np.ndarray, labels: np.ndarray, *,
                   split: str) -> dict[str, Any]:
    """:func:`judge` with the limits a quantize run recorded (``record``: its gate record, or None for
    the default 1-point gate) and the bundle's class names and thresholds: what ``compile``'s
    re-gate and ``evaluate --regate`` both decide by. The verdict also names the ``max_drop`` used."""
    gate = Gate(1.0 if record is None or record.max_drop is None else record.max_drop,
                None if record is None else record.max_class_drop)
    th = manifest.output.thresholds
    verdict = judge(ref, cand, np.asarray(labels), list(manifest.class_names), gate, split=split,
                    thresholds=None if th is None else np.asarray(th))
    return {**verdict, "max_drop": gate.max_drop}


def judge(ref: np.ndarray, cand: np.ndarray, labels: np.ndarray, class_names: list[str],
          gate: Gate, *, split: str = "val", thresholds: np.ndarray | None = None,
          extra: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Decide on a candidate from its and FP32's logits on the same labelled inputs.

    Args:
        ref, cand: logits (N, K) of FP32 and of the candidate, same rows.
        labels: (N,) class indices, or (N, K) multi-hot (then the gate is multi-label).
        split: the labelled split's name (for the reason text).
        thresholds: per-class decision thresholds (multi-label; default 0.5).
        extra: FP32 and candidate logits on unlabelled in-distribution inputs (agreement evidence).
    Returns:
        The verdict: score and drop with its interval (points), per-class checks, agreement,
        ``decided_by`` (``labels`` | ``labels (class)`` | ``agreement`` | ``point estimate``),
        ``resolved``, ``passed`` and a ``reason`` a user can act on.
    """
    n, lim = int(len(labels)), gate.max_drop
    multilabel = labels.ndim == 2
    if multilabel:
        t = labels.astype(bool)
        th = np.full(t.shape[1], 0.5) if thresholds is None else np.asarray(thresholds)
        p_ref, p_cand = activate(ref, "sigmoid"), activate(cand, "sigmoid")
        d_ref, d_cand = p_ref >= th, p_cand >= th
        pd = paired_difference(d_ref, d_cand, gate.confidence,
                               statistic=lambda d, rows: micro_f1(d, t[rows]), n_boot=1000)
        a_ref, a_cand = micro_f1(d_ref, t) * 100.0, micro_f1(d_cand, t) * 100.0
        classes = _ap_checks(p_ref, p_cand, t, class_names, gate)
        metric, cls_metric = "micro_f1", "AP"
        agree_lab = _r(100.0 * (d_ref == d_cand).all(1).mean()) if n else 0.0
    else:
        ok_ref, ok_cand = ref.argmax(1) == labels, cand.argmax(1) == labels
        pd = paired_difference(ok_ref, ok_cand, gate.confidence)
        a_ref, a_cand = ok_ref.mean() * 100.0 if n else 0.0, ok_cand.mean() * 100.0 if n else 0.0
        classes = _class_checks(ok_ref, ok_cand, labels, class_names, gate)
        metric, cls_metric = "top1", "top-1"
        agree_lab = agreement(ref, cand, gate.confidence)["agreement"]
    drop, lo, hi = _pts(pd)
    agree = None
    if not multilabel:
        rr, cc = (ref, cand) if extra is None else (np.concatenate([ref, extra[0]]),
                                                    np.concatenate([cand, extra[1]]))
        agree = {**agreement(rr, cc, gate.confidence), "unlabelled": 0 if extra is None else len(extra[0])}
    per = classes["per_class"]
    worst = max(per.items(), key=lambda kv: kv[1]["drop"], default=("", {"drop": 0.0}))
    where = f"{split}, n={n}"
    interval = f"95% interval [{lo + 0.0:+.1f}, {hi + 0.0:+.1f}]"
    if classes["failed"]:
        c = classes["failed"][0]
        passed, by, resolved = False, "labels (class)", True
        reason = (f"class {c} loses at least {per[c]['lo']:.1f} points of {cls_metric} "
                  f"({where} class samples {per[c].get('n', per[c].get('n_positive'))}), over the "
                  f"class limit {gate.class_limit:g}; try another rung or calibration data with "
                  f"more {c}")
    elif lo > lim + 1e-9:
        passed, by, resolved = False, "labels", True
        reason = (f"loses at least {lo:.1f} points of {metric} ({where}, {interval}), over "
                  f"--max-drop {lim:g}")
    elif hi <= lim + 1e-9:
        passed, by, resolved = True, "labels", True
        reason = f"loses at most {max(hi, 0.0) + 0.0:.1f} points of {metric} ({where}, {interval})"
    elif agree is not None and agree["disagreement_upper"] <= lim + 1e-9:
        passed, by, resolved = True, "agreement", True
        reason = (f"disagrees with FP32 on {agree['disagree']} of {agree['n']} in-distribution inputs "
                  f"({agree['unlabelled']} unlabelled), so it loses at most "
                  f"{agree['disagreement_upper']:.1f} points of top-1 (95%); the labels alone "
                  f"({where}) allow {interval}")
    else:
        passed, by, resolved = drop <= lim + 1e-9, "point estimate", False
        more = (f"; agreement with FP32 on {agree['n']} inputs bounds the drop only to "
                f"{agree['disagreement_upper']:.1f}") if agree is not None else ""
        reason = (f"the data cannot resolve --max-drop {lim:g}: {metric} drop {drop:+.1f} points "
                  f"({where}, {interval}){more}; judged on the point estimate, "
                  f"{'within' if passed else 'over'} the limit; gate on more labelled data "
                  f"(--val-data) to decide")
    if classes["unresolved"] and resolved:
        reason += (f"; classes too small to judge against the class limit: "
                   f"{', '.join(classes['unresolved'][:6])}{' ...' if len(classes['unresolved']) > 6 else ''}")
    out = {"metric": metric, "score": _r(a_cand), "fp32_score": _r(a_ref), "n": n, "split": split,
           "drop": _r(drop), "drop_lo": _r(lo), "drop_hi": _r(hi), "interval_method": pd["method"],
           "worst_class": worst[0], "worst_class_drop": worst[1]["drop"],
           "per_class_drop": per, "classes_failed": classes["failed"],
           "classes_unresolved": classes["unresolved"], "class_limit": gate.class_limit,
           "agreement_with_fp32": agree_lab, "agreement": agree, "decided_by": by,
           "resolved": resolved, "passed": bool(passed), "reason": reason}
    if not multilabel:
        out.update(top1=out["score"], fp32_top1=out["fp32_score"])
    return out


def resolution(labels: np.ndarray) -> dict[str, float]:
    """Smallest accuracy change the split can show, overall and for the smallest class."""
    y = labels if labels.ndim == 1 else labels.argmax(1)
    smallest = int(np.bincount(y).astype(float)[np.bincount(y) > 0].min()) if len(y) else 0
    return {"overall_points": 100.0 / max(len(y), 1),
            "smallest_class_points": 100.0 / max(smallest, 1)}
