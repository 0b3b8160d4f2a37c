"""Parity of an exported model against torch on real samples, at batch 1 and at batch N.

Dynamic-batch bugs show up only at batch > 1 (field notes, complaint 4), so both are checked. Every
failing comparison is collected first and one :class:`ExportValidationError` names them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from cmkd_edge.runtime.backends.onnxruntime import OrtRunner

from cmkd_edge.errors import ExportValidationError

ATOL = 1e-4
#: Relative part of the tolerance, times the largest |logit| of the reference: float32 rounding
#: grows with the size of the numbers a graph carries (a confident 10-class net reaches logits of
#: 20-40 and differs by ~1.5e-4 after the same ops in another order), while a real export bug
#: moves logits by far more.
RTOL = 1e-5


def compare_logits(ref: np.ndarray, got: np.ndarray, label: str, atol: float = ATOL,
                   rtol: float = RTOL) -> dict[str, Any]:
    """Max abs difference (allowed: ``atol + rtol * max|ref|``) and top-1 agreement of two (N, K)
    logit arrays."""
    if ref.shape != got.shape:
        return {"case": label, "ok": False, "problem": f"shape {got.shape} != {ref.shape}"}
    diff = float(np.abs(ref - got).max()) if ref.size else 0.0
    tol = atol + rtol * (float(np.abs(ref).max()) if ref.size else 0.0)
    same_top1 = bool((ref.argmax(1) == got.argmax(1)).all())
    problem = None
    if not np.isfinite(got).all():
        problem = "non-finite logits"
    elif diff > tol:
        problem = f"max abs diff {diff:.3g} > {tol:.3g} (atol {atol:g} + rtol {rtol:g} x max |logit|)"
    elif not same_top1:
        problem = "top-1 differs"
    return {"case": label, "batch": int(ref.shape[0]), "max_abs_diff": diff,
            "top1_identical": same_top1, "ok": problem is None, "problem": problem}


def check_parity(torch_fn: Callable[[np.ndarray], np.ndarray], onnx_path: Path, samples: np.ndarray,
                 batches: Sequence[int] = (1, 8), atol: float = ATOL) -> dict[str, Any]:
    """Run torch and onnxruntime (CPU) on the same raw samples; batch 1 on each of the first
    samples, then batches of N over all of them.

    The ONNX side is the runtime's own runner (one intra-op thread), so parity is measured on the
    code path a device runs.

    Raises:
        ExportValidationError: any comparison failed (all failures named in one message).
    """
    cases = []
    with OrtRunner(onnx_path, threads=1) as runner:
        name, output = next(iter(runner.input_specs())), runner.output_names()[0]
        for b in batches:
            n = min(len(samples), max(b, 4) if b == 1 else len(samples))
            for start in range(0, n - b + 1, b):
                x = np.ascontiguousarray(samples[start:start + b], dtype=np.float32)
                cases.append(compare_logits(torch_fn(x), runner.infer({name: x})[output],
                                            f"batch {b} @ {start}", atol))
    failed = [c for c in cases if not c["ok"]]
    report = {"atol": atol, "rtol": RTOL, "samples": int(len(samples)), "batches": list(batches),
              "max_abs_diff": max((c.get("max_abs_diff", float("inf")) for c in cases), default=0.0),
              "top1_identical": all(c.get("top1_identical", False) for c in cases),
              "cases": len(cases), "failed": failed}
    if failed:
        raise ExportValidationError(
            f"{onnx_path.name} disagrees with torch in {len(failed)}/{len(cases)} case(s): "
            + "; ".join(f"{c['case']}: {c['problem']}" for c in failed[:6]))
    return report
