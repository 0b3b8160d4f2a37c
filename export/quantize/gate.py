"""The accuracy gate: a quantized candidate is accepted only if the task metric holds up.

Field notes, complaint 1: INT8 accuracy collapses silently. Each candidate is run on the raw
validation inputs by the backend it is meant for (the runtime's ONNX Runtime or OpenVINO runner, no
torch) and compared with FP32 run the same way: top-1 may drop by at most ``max_drop`` points and no class by more than
``max_class_drop`` (default 3x ``max_drop``). With few validation samples per class one flipped
sample moves a class by 100/n points; the report states that resolution so a failure is read right.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from cmkd_edge.runtime.backends.onnxruntime import OrtRunner
from cmkd_edge.runtime.backends.openvino import OpenVinoRunner
from cmkd_edge.runtime.base import Runner
from cmkd_edge.runtime.metrics import accuracy, confusion_matrix, per_class_accuracy


def logits(runner: Runner, x: np.ndarray, batch: int = 16) -> np.ndarray:
    """First output of ``runner`` on raw inputs ``x`` (N, C, H, W), ``batch`` rows at a time."""
    with runner:
        name, output = next(iter(runner.input_specs())), runner.output_names()[0]
        return np.concatenate([runner.infer({name: np.ascontiguousarray(x[i:i + batch])})[output]
                               for i in range(0, len(x), batch)])


def run_onnxruntime(path: str | os.PathLike[str] | bytes, x: np.ndarray, batch: int = 16) -> np.ndarray:
    """Logits of an ONNX model (a file or its bytes) on raw inputs: the runtime's ONNX Runtime
    runner, CPU provider, one intra-op thread."""
    runner = OrtRunner.from_memory(path, threads=1) if isinstance(path, bytes) else OrtRunner(path, threads=1)
    return logits(runner, x, batch)


def run_openvino(model: Any, x: np.ndarray, batch: int = 16) -> np.ndarray:
    """Logits of an OpenVINO model (a path, or an ``openvino.Model`` in memory) on raw inputs: the
    runtime's OpenVINO runner on CPU, one thread, OpenVINO's default performance and precision
    hints (what the gate has always measured)."""
    opts: dict[str, Any] = {"threads": 1, "device": "CPU", "performance_hint": None}
    runner = (OpenVinoRunner(model, **opts) if isinstance(model, (str, os.PathLike))
              else OpenVinoRunner.from_memory(model, **opts))
    return logits(runner, x, batch)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent, the trainer's scorer (``distill.metrics.accuracy``).

    Multi-hot labels: a hit is an argmax that is any positive class (the metrics module has no
    such score; the gate needs one number per model for both tasks).
    """
    pred = logits.argmax(1)
    if labels.ndim == 2:
        return float((labels[np.arange(len(pred)), pred] > 0).mean() * 100.0) if len(pred) else 0.0
    return accuracy(labels, pred) * 100.0


def per_class(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float | None]:
    """Top-1 per true class, percent (None for a class absent from the split); the trainer's
    ``per_class_accuracy`` of the confusion matrix (multi-hot labels: their first positive class)."""
    y = labels if labels.ndim == 1 else labels.argmax(1)
    cm = confusion_matrix(y, logits.argmax(1), num_classes)
    return [None if v is None else v * 100.0 for v in per_class_accuracy(cm)]


@dataclass(frozen=True)
class Gate:
    """Thresholds in accuracy points."""

    max_drop: float = 1.0
    max_class_drop: float | None = None

    @property
    def class_limit(self) -> float:
        return 3.0 * self.max_drop if self.max_class_drop is None else self.max_class_drop


def judge(ref: np.ndarray, cand: np.ndarray, labels: np.ndarray, class_names: list[str],
          gate: Gate) -> dict[str, Any]:
    """Compare candidate logits with FP32 logits on the same validation inputs."""
    k = len(class_names)
    a_ref, a_cand = top1(ref, labels), top1(cand, labels)
    pc_ref, pc_cand = per_class(ref, labels, k), per_class(cand, labels, k)
    drops = {class_names[c]: round(r - q, 3) for c, (r, q) in enumerate(zip(pc_ref, pc_cand,
                                                                             strict=True))
             if r is not None and q is not None}
    worst = max(drops.items(), key=lambda kv: kv[1], default=("", 0.0))
    drop = a_ref - a_cand
    passed = drop <= gate.max_drop + 1e-9 and worst[1] <= gate.class_limit + 1e-9
    return {"top1": round(a_cand, 3), "fp32_top1": round(a_ref, 3), "drop": round(drop, 3),
            "worst_class": worst[0], "worst_class_drop": worst[1], "per_class_drop": drops,
            "agreement_with_fp32": round(float((ref.argmax(1) == cand.argmax(1)).mean() * 100), 3),
            "passed": bool(passed)}


def resolution(labels: np.ndarray) -> dict[str, float]:
    """Smallest accuracy change the split can show, overall and for the smallest class."""
    y = labels if labels.ndim == 1 else labels.argmax(1)
    smallest = int(np.bincount(y).astype(float)[np.bincount(y) > 0].min()) if len(y) else 0
    return {"overall_points": 100.0 / max(len(y), 1),
            "smallest_class_points": 100.0 / max(smallest, 1)}
