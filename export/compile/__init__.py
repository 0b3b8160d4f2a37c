"""``compile_bundle``: target-specific artifacts (OpenVINO IR, TensorRT plan) from the bundle's ONNX.

Sources: FP32 -> ``onnx-fp32``; FP16 -> ``onnx-fp32`` (compressed by the target); INT8 ->
``onnx-int8``, the QDQ model written by ``cmkd-edge quantize`` (the one INT8 artifact every backend
accepts). Each result is added to the bundle atomically with the artifact it came from.
"""

from __future__ import annotations

import os
import tempfile
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
                   cache_dir: str | os.PathLike[str] | None = None, min_batch: int = 1,
                   opt_batch: int = 1, max_batch: int = 8,
                   timing_cache: str | os.PathLike[str] | None = None,
                   strongly_typed: bool = False) -> list[dict[str, Any]]:
    """Compile the bundle for ``target``; returns the artifact entries added.

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
            "device": device, "check": check, "gate_passed": src.get("gate_passed")}


def _tensorrt(root: Path, src: dict[str, Any], precision: str, shape: list[Any], min_batch: int,
              opt_batch: int, max_batch: int, timing_cache: str | os.PathLike[str] | None,
              strongly_typed: bool) -> dict[str, Any]:
    from cmkd_edge.export.compile import tensorrt as trtc

    rel = f"tensorrt/model.{precision}.plan"
    (root / "tensorrt").mkdir(exist_ok=True)
    cache = Path(timing_cache) if timing_cache else Path(tempfile.gettempdir()) / "cmkd-trt.cache"
    info = trtc.build_engine(root / src["path"], root / rel, precision=precision,
                             input_shape=shape, min_batch=min_batch, opt_batch=opt_batch,
                             max_batch=max_batch, timing_cache=cache, strongly_typed=strongly_typed)
    return {"id": f"tensorrt-{precision}", "path": rel, "format": "tensorrt-plan",
            "precision": precision, "backend": "tensorrt", "files": [rel], "source": src["id"],
            "fingerprint": info["fingerprint"], "max_batch": max_batch,
            "profile": info["profile"], "strongly_typed": strongly_typed,
            "gate_passed": src.get("gate_passed")}
