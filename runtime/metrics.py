"""Classification metrics in numpy: what the trainer selects on, what ``evaluate`` and the export gate report.

They live in the runtime because they are numpy only (no torch, no scikit-learn): the same functions
score a checkpoint in training, a quantized candidate in export, and a bundle's outputs on a device,
and the trainer and export both import them from here (the runtime imports neither).
Multiclass metrics take class probabilities (N, K) and integer labels (N,); multi-label metrics take
per-class probabilities (N, K) and multi-hot targets (N, K).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cmkd_edge.errors import CmkdError

ECE_BINS = 15


def require_class_names(
    got: Sequence[Any] | None,
    want: Sequence[Any] | None,
    error: type[CmkdError],
    message: str,
    hint: str | None = None,
    tasks: tuple[str, str] | None = None,
) -> None:
    """Refuse labelled data (or a model) whose class list is not the one it is scored against.

    Labels are class indices, so the same index under another class list scores the wrong class and
    can even pass an accuracy gate by accident; the trainer, ``evaluate`` and quantize all refuse it.

    Args:
        got, want: the two class lists, compared in order; None (not known) skips the check.
        error: the error class the caller reports (e.g. ``CheckpointError``, ``QuantizationError``).
        message: its ``{got}`` and ``{want}`` are replaced by the comma-joined lists (by plain
            replacement, not ``str.format``, so a path with braces in the message stays as it is).
        tasks: optional (got task, wanted task); a different task is refused the same way.
    Raises:
        error: the lists (or tasks) differ.
    """
    if got is None or want is None:
        return
    if list(got) != list(want) or (tasks is not None and tasks[0] != tasks[1]):
        text = message.replace("{got}", ", ".join(map(str, got))).replace("{want}", ", ".join(map(str, want)))
        raise error(text, hint)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts; row = true class, column = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of exact matches (0.0 on an empty set)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if y_true.size else 0.0


def per_class_accuracy(cm: np.ndarray) -> list[float | None]:
    """Recall of each class (diagonal / row sum); None for a class absent from the set."""
    rows = cm.sum(axis=1)
    return [float(cm[i, i] / rows[i]) if rows[i] else None for i in range(cm.shape[0])]


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    # why: a class never predicted nor present has an undefined F1; count it as 0 like sklearn's default
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in truth or prediction."""
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    seen = (tp + fp + fn) > 0
    return float(_f1_from_counts(tp, fp, fn)[seen].mean()) if seen.any() else 0.0


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017): sum over equal-width confidence bins of |accuracy - confidence| * share.

    Args:
        probs: (N, K) class probabilities.
        y_true: (N,) integer labels.
        bins: number of equal-width bins on [0, 1] (15, as in Guo et al.).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape[0] == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # right-closed bins (lo, hi]; confidence 0 cannot occur for a max over K >= 1 probabilities
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """Area under the precision-recall curve as the mean precision at each positive (no interpolation).

    Returns None when there is no positive (AP undefined).
    """
    positives = np.asarray(positives).astype(bool)
    n_pos = int(positives.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = positives[order]
    precision_at = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision_at[hits].sum() / n_pos)


def multiclass_report(
    probs: np.ndarray, y_true: np.ndarray, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class accuracy, confusion matrix and ECE for (N, K) probabilities."""
    probs = np.asarray(probs)
    k = probs.shape[1]
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, k)
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    return {
        "task": "multiclass",
        "n": int(y_true.size),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(cm),
        "ece": expected_calibration_error(probs, y_true),
        "per_class_accuracy": dict(zip(names, per_class_accuracy(cm), strict=True)),
        "confusion_matrix": cm.tolist(),
        "class_names": names,
    }


def multilabel_report(
    probs: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str] | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Micro/macro F1 at ``threshold`` and mAP (mean AP over classes with a positive)."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    pred = probs >= threshold
    tp = (pred & targets).sum(axis=0).astype(np.float64)
    fp = (pred & ~targets).sum(axis=0).astype(np.float64)
    fn = (~pred & targets).sum(axis=0).astype(np.float64)
    seen = (tp + fp + fn) > 0
    per_f1 = _f1_from_counts(tp, fp, fn)
    micro = _f1_from_counts(tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True))[0]
    aps = [average_precision(probs[:, j], targets[:, j]) for j in range(probs.shape[1])]
    valid = [a for a in aps if a is not None]
    names = list(class_names) if class_names is not None else [str(i) for i in range(probs.shape[1])]
    return {
        "task": "multilabel",
        "n": int(probs.shape[0]),
        "micro_f1": float(micro),
        "macro_f1": float(per_f1[seen].mean()) if seen.any() else 0.0,
        "map": float(np.mean(valid)) if valid else 0.0,
        "per_class_ap": dict(zip(names, aps, strict=True)),
        "threshold": threshold,
        "class_names": names,
    }


def classification_report(
    task: str, probs: np.ndarray, targets: np.ndarray, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Dispatch on ``task`` ("multiclass" | "multilabel")."""
    if task == "multilabel":
        return multilabel_report(probs, targets, class_names)
    return multiclass_report(probs, targets, class_names)


#: Scalar metrics of each task, in the order tables and metrics.csv show them.
SCALARS = {
    "multiclass": ("accuracy", "macro_f1", "ece"),
    "multilabel": ("map", "micro_f1", "macro_f1"),
}
#: Metric used for best-checkpoint selection when the config does not name one (higher is better).
DEFAULT_SELECT = {"multiclass": "accuracy", "multilabel": "map"}


def scalars(report: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics of a report (what metrics.csv and summaries keep)."""
    return {k: float(report[k]) for k in SCALARS[report["task"]]}


# -- paired comparisons ---------------------------------------------------------------------------

def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (n > 0)."""
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _binom_two_sided(k: int, m: int) -> float:
    """Exact two-sided p-value of k successes in m fair trials (McNemar's exact test)."""
    if m == 0:
        return 1.0
    from math import exp, lgamma, log

    lo = min(k, m - k)
    logs = [lgamma(m + 1) - lgamma(i + 1) - lgamma(m - i + 1) + m * log(0.5) for i in range(lo + 1)]
    return float(min(1.0, 2.0 * sum(exp(v) for v in logs)))


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (exact for the n a split holds)."""
    import math

    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided ``1 - alpha`` interval for a binomial rate ``k / n``.

    Bisection on the binomial CDF (no scipy on a device). Why exact: the splits a gate sees hold
    tens of samples and often zero events, where a normal approximation claims certainty it lacks.
    """
    if n <= 0:
        return 0.0, 1.0

    def solve(target: float, kk: int) -> float:  # p with P(X <= kk | p) = target (decreasing in p)
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if _binom_cdf(kk, n, mid) > target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    lower = 0.0 if k <= 0 else solve(1 - alpha / 2, k - 1)
    upper = 1.0 if k >= n else solve(alpha / 2, k)
    return lower, upper


def _paired_booleans(a: np.ndarray, b: np.ndarray, confidence: float) -> dict[str, Any]:
    """``b - a`` for per-item correctness: Newcombe's method 10 interval, McNemar's exact p.

    Newcombe 1998 (Stat. Med. 17:2635), "square-and-add" of the Wilson score intervals of both
    accuracies with the phi correlation of the paired outcomes (continuity-corrected when positive):
    its coverage stays near nominal when discordant items are few, and it is not degenerate when
    there are none (40 identical outcomes still allow a drop of about 9 points).
    """
    from statistics import NormalDist

    n = int(a.size)
    if n == 0:
        raise ValueError("paired_difference needs at least one item")
    both, lost = int((a & b).sum()), int((a & ~b).sum())
    gained, neither = int((~a & b).sum()), int((~a & ~b).sum())
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p1, p2 = (both + lost) / n, (both + gained) / n
    l1, u1 = _wilson(both + lost, n, z)
    l2, u2 = _wilson(both + gained, n, z)
    denom = float(np.sqrt(float(both + lost) * (gained + neither) * (both + gained) * (lost + neither)))
    cross = float(both) * neither - float(lost) * gained
    phi = 0.0 if denom == 0 else (max(cross - n / 2.0, 0.0) if cross > 0 else cross) / denom
    diff = p2 - p1
    # B - A: the lower end takes B's downside and A's upside, the upper end the reverse
    d_lo = np.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    d_hi = np.sqrt(max((u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2, 0.0))
    return {"difference": diff, "lo": max(-1.0, diff - float(d_lo)), "hi": min(1.0, diff + float(d_hi)),
            "n": n, "confidence": confidence, "method": "newcombe-10 (paired Wilson); McNemar exact p",
            "acc_a": p1, "acc_b": p2, "gained": gained, "lost": lost,
            "p_value": _binom_two_sided(min(lost, gained), lost + gained)}


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95, *,
                      statistic: Any = None, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Difference ``b - a`` of two models scored on the *same* inputs, with a paired interval.

    Why paired: two accuracies measured on the same samples share most of their noise; what
    separates the models is only the samples on which they disagree (the flips). Subtracting two
    accuracies and reading each one's own error bar overstates the uncertainty on large splits and
    hides it on small ones.

    Args:
        a, b: per-sample outcomes of the reference and the candidate, first axis = samples.
            Boolean (correct or not): Newcombe's method 10 interval from the paired outcomes
            (``_paired_booleans``) and McNemar's exact p-value; valid with zero flips (0 flips in
            40 samples still allows a drop of about 9 points), unlike an interval conditional on
            the number of flips.
            Numeric: a paired bootstrap (``n_boot`` resamples of the sample indices, percentile),
            never narrower than +- the exact zero-event bound for ``n`` samples.
        statistic: optional ``f(rows_of_x, row_indices) -> float`` for a score that is not a mean
            of per-sample outcomes (micro-F1, mAP): called on ``a`` and on ``b`` for each bootstrap
            resample of the same indices; ``a``/``b`` may then be any arrays with N rows.
        seed: bootstrap resampling seed.
    Returns:
        ``difference`` (b - a, in the units of the outcomes: a fraction for booleans), ``lo``,
        ``hi``, ``n``, ``confidence``, ``method``, and for booleans ``gained`` (only b right),
        ``lost`` (only a right), ``acc_a``, ``acc_b`` and ``p_value``; ``resolved_sign`` is False
        when the interval holds zero ("no measurable difference", whatever the sign).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape[:1] != b.shape[:1]:
        raise ValueError(f"paired outcomes differ in length: they need the same samples "
                         f"(got {a.shape[:1]} and {b.shape[:1]})")
    if a.size == 0:
        raise ValueError("paired_difference needs at least one item")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = int(a.shape[0])
    alpha = 1.0 - confidence
    if statistic is None and a.dtype == bool and b.dtype == bool:
        out = _paired_booleans(a.ravel(), b.ravel(), confidence)
    else:
        if statistic is None:
            def statistic(x: np.ndarray, _rows: np.ndarray) -> float:
                return float(np.mean(x)) if len(x) else 0.0
        rows = np.arange(n)
        diff = statistic(b, rows) - statistic(a, rows) if n else 0.0
        rng = np.random.default_rng(seed)
        boots = np.empty(n_boot)
        for i in range(n_boot):
            r = rng.integers(0, n, n) if n else rows
            boots[i] = statistic(b[r], r) - statistic(a[r], r)
        lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2]) if n else (0.0, 0.0)
        # why a floor: resampling identical outputs gives [0, 0], a certainty n samples cannot
        # carry; the interval is at least +- the exact zero-event bound for n (8.8 % at n = 40)
        h = clopper_pearson(0, n, alpha)[1] if n else 1.0
        lo, hi = min(lo, diff - h), max(hi, diff + h)
        out = {"difference": float(diff), "lo": float(lo), "hi": float(hi), "n": n,
               "confidence": confidence, "method": "bootstrap", "n_boot": n_boot}
    out["resolved_sign"] = bool(out["lo"] > 0 or out["hi"] < 0)
    return out


def micro_f1(decisions: np.ndarray, targets: np.ndarray) -> float:
    """Micro-averaged F1 of multi-label decisions (N, K) bool against multi-hot targets (N, K)."""
    d, t = np.asarray(decisions).astype(bool), np.asarray(targets).astype(bool)
    tp, fp, fn = float((d & t).sum()), float((d & ~t).sum()), float((~d & t).sum())
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0


def choose_thresholds(probs: np.ndarray, targets: np.ndarray, default: float = 0.5,
                      min_positives: int = 3) -> list[float]:
    """Per-class decision thresholds that maximise each class's F1 on a (validation) split.

    Why per class: sigmoid outputs of rare and common classes are not on one scale, and a single 0.5
    leaves rare classes never predicted. A class with fewer than ``min_positives`` positives in the
    split keeps ``default``: its F1 curve is too noisy to pick from.
    """
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets).astype(bool)
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    out = []
    for j in range(probs.shape[1]):
        if int(targets[:, j].sum()) < min_positives:
            out.append(default)
            continue
        f1 = [micro_f1(probs[:, j:j + 1] >= g, targets[:, j:j + 1]) for g in grid]
        out.append(float(grid[int(np.argmax(f1))]))
    return out


def agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Fraction of items on which two models predict the same class."""
    pa, pb = np.asarray(pred_a).ravel(), np.asarray(pred_b).ravel()
    if pa.shape != pb.shape or pa.size == 0:
        raise ValueError(f"agreement needs two non-empty prediction lists of one length "
                         f"({pa.size} and {pb.size})")
    return float((pa == pb).mean())
