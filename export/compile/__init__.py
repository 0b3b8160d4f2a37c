"""``compile_bundle``: target-specific artifacts (OpenVINO IR, TensorRT plan) from the bundle's ONNX.

Sources: FP32 -> ``onnx-fp32``; FP16 -> ``onnx-fp32`` (compressed by the target); INT8 ->
``onnx-int8``, the QDQ model written by ``cmkd-edge quantize`` (the one INT8 artifact every backend
accepts). Each result is added to the bundle atomically with the artifact it came from.

Gating: the accuracy gate of ``quantize`` ran on ONNX Runtime, so a compiled artifact never inherits
``gate_passed``; it records its ``source`` and gets ``gate_passed`` only from its own evaluation.
An OpenVINO INT8 IR is evaluated on the very validation samples the gate used when the bundle
records how to re-read them (``quantization["onnxruntime:int8"].gate``: data, split, sha256, plus
``provenance.data``) and they hash the same; otherwise, and for TensorRT (which cannot run on the
machine that compiles here), ``gate_passed`` is None. Re-quantizing drops artifacts compiled from
the old QDQ model (``export.bundle.drop_artifacts``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cmkd_edge.errors import ConfigError, ExportValidationError

TARGETS = ("openvino", "tensorrt")


def _source(manifest: dict[str, Any], precision: str) -> dict[str, Any]:
    want = "onnx-int8" if precision == "int8" else "onnx-fp32"
    art = next((a for a in manifest["artifacts"] if a["id"] == want), None)
    if art is None:
        hint = ("run `cmkd-edge quantize BUNDLE --backend onnxruntime --precision int8` first "
                "(INT8 comes from its QDQ model)") if precision == "int8" else "re-export the bundle"
        raise ExportValidationError(f"the bundle has no {want} artifact to compile {precision} from",
                                    hint)
    return art


def compile_bundle(bundle: str | os.PathLike[str], *, target: str = "openvino",
                   precisions: Sequence[str] = ("fp32",), device: str = "CPU",
                   cache_dir: str | os.PathLike[str] | None = None, min_batch: int | None = None,
                   opt_batch: int | None = None, max_batch: int | None = None,
                   timing_cache: str | os.PathLike[str] | None = None,
                   strongly_typed: bool = False) -> list[dict[str, Any]]:
    """Compile the bundle for ``target``; returns the artifact entries added.

    TensorRT: batch profile and timing cache default to the runtime builder's
    (``cmkd_edge.runtime.trt_build``: min 1, opt = max, max 8; per-user, per-device timing cache).

    Raises:
        ConfigError: unknown target/precision/device.
        ExportValidationError: missing source artifact, compile or check failure.
        BackendUnavailableError: the target's toolkit (or GPU) is missing.
    """
    import numpy as np
    from cmkd_edge.export.bundle import edit_bundle, set_artifact

    if target not in TARGETS:
        raise ConfigError(f"unknown compile target {target!r}", f"choose {' or '.join(TARGETS)}")
    allowed = ("fp32", "fp16", "int8") if target == "openvino" else ("fp16", "int8")
    bad = [p for p in precisions if p not in allowed]
    if bad or not precisions:
        raise ConfigError(f"precision {','.join(bad) or 'none'} is not available for {target}",
                          f"choose from {', '.join(allowed)}")
    added: list[dict[str, Any]] = []
    with edit_bundle(bundle) as (root, manifest):
        shape = manifest["input"]["shape"]
        rng = manifest["input"].get("expected_range") or [0.0, 1.0]
        sample = np.random.default_rng(0).uniform(rng[0], rng[1], size=(2, *shape[1:])).astype(
            np.float32)
        for precision in precisions:
            src = _source(manifest, precision)
            if target == "openvino":
                art = _openvino(root, src, precision, device, sample, cache_dir)
                if precision == "int8":
                    art.update(_regate(root, manifest, art))
            else:
                art = _tensorrt(root, src, precision, shape, min_batch, opt_batch, max_batch,
                                timing_cache, strongly_typed)
            set_artifact(manifest, art)
            added.append(art)
    return added


def _openvino(root: Path, src: dict[str, Any], precision: str, device: str, sample: Any,
              cache_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    from cmkd_edge.export.compile import openvino as ovc

    if device not in ovc.DEVICES:
        raise ConfigError(f"unknown OpenVINO device {device!r}", f"choose one of {', '.join(ovc.DEVICES)}")
    rel = f"openvino/model.ir-{precision}.xml"
    (root / "openvino").mkdir(exist_ok=True)
    files = ovc.convert(root / src["path"], root / rel, fp16=precision == "fp16")
    check = ovc.compile_check(root / rel, sample, Path(cache_dir) if cache_dir else None)
    return {"id": f"openvino-ir-{precision}", "path": rel, "format": "openvino-ir",
            "precision": precision, "backend": "openvino",
            "files": [p.relative_to(root).as_posix() for p in files], "source": src["id"],
            "device": device, "check": check, "gate_passed": None}


def _tensorrt(root: Path, src: dict[str, Any], precision: str, shape: list[Any],
              min_batch: int | None, opt_batch: int | None, max_batch: int | None,
              timing_cache: str | os.PathLike[str] | None,
              strongly_typed: bool) -> dict[str, Any]:
    from cmkd_edge.export.compile import tensorrt as trtc

    rel = f"tensorrt/model.{precision}.plan"
    (root / "tensorrt").mkdir(exist_ok=True)
    info = trtc.build_engine(root / src["path"], root / rel, precision=precision,
                             input_shape=shape, min_batch=min_batch, opt_batch=opt_batch,
                             max_batch=max_batch, strongly_typed=strongly_typed,
                             timing_cache=Path(timing_cache) if timing_cache else None)
    return {"id": f"tensorrt-{precision}", "path": rel, "format": "tensorrt-plan",
            "precision": precision, "backend": "tensorrt", "files": [rel], "source": src["id"],
            "fingerprint": info["fingerprint"], "max_batch": info["profile"]["max"],
            "profile": info["profile"], "strongly_typed": strongly_typed,
            "gate_passed": None}  # not evaluated: TensorRT runs only on the device


def _regate(root: Path, manifest: dict[str, Any], art: dict[str, Any]) -> dict[str, Any]:
    """Run the gate again on an OpenVINO INT8 IR, on the ONNX Runtime gate's own samples.

    Returns the artifact fields to set: ``gate_passed`` (None when not evaluated) and ``gate``
    (what was done, or why not). FP32 is the bundle's FP32 ONNX run by OpenVINO, as in quantize.
    """
    from cmkd_edge.export.quantize.calib import Recorded, load_validation
    from cmkd_edge.export.quantize.gate import Gate, judge, run_openvino

    from cmkd_edge.errors import CmkdError

    rec = (manifest.get("quantization") or {}).get("onnxruntime:int8") or {}
    gate = rec.get("gate") or {}
    data = gate.get("data")
    if not rec.get("passed") or not gate.get("sha256") or data in (None, "arrays"):
        return {"gate_passed": None,
                "gate": {"evaluated": False, "why": "the bundle does not record re-readable gate "
                                                     "samples (re-run quantize with a dataset)"}}
    try:
        val = load_validation(manifest, None if data == "synthetic" else data, gate["split"],
                              int(gate.get("sample_seed") or 0), Recorded.from_manifest(manifest, root))
    except CmkdError as exc:
        return {"gate_passed": None, "gate": {"evaluated": False, "why": exc.one_line()}}
    if val.sha256() != gate["sha256"]:
        return {"gate_passed": None,
                "gate": {"evaluated": False, "why": f"{data} no longer yields the gate's samples"}}
    fp32 = next(a for a in manifest["artifacts"] if a["id"] == "onnx-fp32")
    ref = run_openvino(root / fp32["path"], val.x)
    verdict = judge(ref, run_openvino(root / art["path"], val.x), val.labels,
                    list(manifest["class_names"]), Gate(gate["max_drop"], gate.get("max_class_drop")))
    return {"gate_passed": verdict["passed"],
            "accuracy": {"top1": verdict["top1"], "split": gate["split"], "backend": "openvino",
                         "fp32_top1": verdict["fp32_top1"], "drop": verdict["drop"]},
            "gate": {"evaluated": True, "n": len(val), "sha256": gate["sha256"],
                     **{k: verdict[k] for k in ("passed", "worst_class", "worst_class_drop",
                                                "agreement_with_fp32")}}}
