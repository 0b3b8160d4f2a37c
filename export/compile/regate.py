"""The accuracy gate again, on a compiled INT8 artifact, with the samples ``quantize`` gated on.

Why: the gate of ``quantize`` ran the QDQ model on ONNX Runtime; another engine (OpenVINO's INT8
kernels, a TensorRT plan) computes differently, so a compiled INT8 artifact is accepted only by its
own evaluation. The samples are re-read from the record ``quantize`` left
(``quantization["onnxruntime:int8"].gate``: data, split, sha256, plus ``provenance.data``) and used
only when they hash the same; otherwise, or when the artifact's engine cannot run on this machine
(TensorRT runs only on the device), ``gate_passed`` stays None and the record says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from cmkd_edge.runtime.contract.manifest import Artifact, Manifest
from cmkd_edge.runtime.contract.records import ONNX_FP32, Accuracy, ArtifactGate


def _logits(backend: str, path: Path, x: np.ndarray) -> np.ndarray | None:
    """The engine's logits through the runtime's runner, or None when it cannot run here (not
    installed, no GPU, or it could load ``path`` only by building an engine first)."""
    from cmkd_edge.export.quantize.gate import run
    from cmkd_edge.runtime.backends import backend_spec

    spec = backend_spec(backend)
    fmt = "onnx" if path.suffix == ".onnx" else None
    if not spec.available() or fmt in spec.build_formats:
        return None
    return run(backend, path, x)


def regate(root: Path, manifest: Manifest, art: Artifact) -> dict[str, Any]:
    """Fields to set on ``art``: ``gate_passed`` (None when not evaluated), ``accuracy`` and its
    ``gate`` record (what was done, or why not). FP32 is the bundle's FP32 ONNX run by the same
    engine, as in quantize."""
    from cmkd_edge.export.quantize.calib import load_validation
    from cmkd_edge.export.quantize.gate import judge_recorded
    from cmkd_edge.export.samples import Recorded

    from cmkd_edge.errors import CmkdError

    def not_evaluated(why: str) -> dict[str, Any]:
        return {"gate_passed": None, "gate": ArtifactGate(evaluated=False, why=why)}

    rec = manifest.quant("onnxruntime", "int8")
    gate = rec.gate if rec is not None else None
    if rec is None or gate is None or not rec.passed or not gate.sha256 or gate.data in (None, "arrays"):
        return not_evaluated("the bundle does not record re-readable gate samples (re-run "
                             "quantize with a dataset)")
    try:
        val = load_validation(manifest, None if gate.data == "synthetic" else gate.data, gate.split,
                              int(gate.sample_seed or 0), Recorded.from_manifest(manifest, root))
    except CmkdError as exc:
        return not_evaluated(exc.one_line())
    if val.sha256() != gate.sha256:
        return not_evaluated(f"{gate.data} no longer yields the gate's samples")
    ref = _logits(art.backend, root / manifest.artifact(ONNX_FP32).path, val.x)
    if ref is None:
        return not_evaluated(f"{art.backend} does not run on the machine that compiles; "
                             "evaluate the bundle on the device")
    verdict = judge_recorded(manifest, gate, ref, _logits(art.backend, root / art.path, val.x), val.labels,
                             split=gate.split)
    return {"gate_passed": verdict["passed"],
            "accuracy": Accuracy.scored(manifest.task, verdict["score"], split=gate.split, n=len(val),
                                        backend=art.backend, fp32=verdict["fp32_score"],
                                        drop=verdict["drop"],
                                        drop_interval=(verdict["drop_lo"], verdict["drop_hi"]),
                                        resolved=verdict["resolved"]),
            "gate": ArtifactGate(evaluated=True, n=len(val), sha256=gate.sha256, **{
                k: verdict[k] for k in ("passed", "worst_class", "worst_class_drop",
                                        "agreement_with_fp32", "decided_by", "resolved", "reason")})}
