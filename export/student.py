"""``export_checkpoint``: a student checkpoint in, a verified bundle with ``model.onnx`` out.

Steps, each recorded in the manifest: rebuild the network, wrap it with its deploy preprocessing,
export (see :mod:`cmkd_edge.export.onnx` for the exporter choice), check, slim, check again, compare
with torch on real samples at batch 1 and batch N, and write the bundle through a staging directory
so a killed export leaves the previous bundle untouched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from cmkd_edge.export.bundle import finish_manifest, staged_dir
from cmkd_edge.export.onnx import (
    DEFAULT_OPSET,
    build_deploy_module,
    check_onnx,
    export_onnx,
    slim,
)
from cmkd_edge.export.parity import check_parity
from cmkd_edge.export.preprocess import EXPECTED_RANGE, input_spec, validate_spec
from cmkd_edge.export.samples import RawSamples, load_raw_samples

from cmkd_edge.errors import DataError, ExportValidationError
from cmkd_edge.fsutil import sha256_file

MODEL_FILE = "model.onnx"


def tool_versions() -> dict[str, str]:
    """Versions of every tool that shaped the artifacts (missing optional ones are skipped)."""
    import importlib.metadata as md

    out = {}
    for dist in ("cmkd-edge", "torch", "onnx", "onnxscript", "onnxslim", "onnxruntime", "openvino",
                 "nncf", "tensorrt"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return out


def parity_samples(ckpt: dict[str, Any], spec: dict[str, Any], data: str | None, n: int,
                   seed: int, hw: tuple[int, int] | None) -> RawSamples:
    """Real samples of the validation split (the checkpoint's data unless ``data`` is given);
    random values in the expected range only when no data can be read (recorded as such)."""
    source = data or (ckpt.get("data") or {}).get("path")
    split_file = Path(ckpt["_path"]).parent / "split.csv"  # a run's drawn split, if it has one
    try:
        return load_raw_samples(source, spec, ckpt["view"], "val", n=n, seed=seed,
                                split_file=str(split_file) if split_file.is_file() else None)
    except (DataError, ImportError, OSError) as exc:
        why = getattr(exc, "message", str(exc))
    h, w = hw or (64, 64)
    lo, hi = EXPECTED_RANGE.get(spec["source_units"], (0.0, 1.0))
    rng = np.random.default_rng(seed)
    x = rng.uniform(lo, hi, size=(n, len(spec["source_bands"]), h, w)).astype(np.float32)
    return RawSamples(x=x, labels=np.zeros(n, np.int64),
                      info={"data": "random", "why": str(why)[:200], "n": n, "synthetic": True})


def export_checkpoint(ckpt_path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                      opset: int = DEFAULT_OPSET, exporter: str = "auto", data: str | None = None,
                      samples: int = 16, batch: int = 8, max_batch: int | None = None,
                      seed: int = 0, hw: tuple[int, int] | None = None) -> Path:
    """Export a checkpoint (file or run dir) into the bundle directory ``out``.

    Args:
        opset: ONNX opset to write (checked against the installed runtimes).
        exporter: ``auto`` | ``dynamo`` | ``legacy`` (see module :mod:`cmkd_edge.export.onnx`).
        data: dataset for the parity samples (default: the checkpoint's own data).
        samples, batch: parity on ``samples`` validation samples, at batch 1 and ``batch``.
        max_batch: largest batch the bundle promises (recorded; TensorRT profiles use it).
        hw: input height/width when no data is readable (default: the data's patch size).
    Returns:
        The bundle directory.
    Raises:
        CheckpointError, ExportValidationError (every failed check named in one message).
    """
    import torch

    from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    spec = validate_spec(ckpt["preprocess"])
    net = model_from_checkpoint(ckpt)
    if net.in_channels != len(spec["select"]):
        raise ExportValidationError(f"network takes {net.in_channels} bands but the preprocessing "
                                    f"selects {len(spec['select'])}")
    module = build_deploy_module(net, spec)
    raw = parity_samples(ckpt, spec, data, max(samples, batch), seed, hw)
    h, w = raw.x.shape[-2:]
    inp = input_spec(spec, ckpt.get("view_info") or {}, (h, w))

    def torch_fn(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    out = Path(out)
    with staged_dir(out) as tmp:
        onnx_path = tmp / MODEL_FILE
        asked = export_onnx(module, torch.from_numpy(raw.x[:2].copy()), onnx_path, opset, exporter)
        check_onnx(onnx_path, opset)
        slim_info = slim(onnx_path)
        checks = check_onnx(onnx_path, opset)
        parity = check_parity(torch_fn, onnx_path, raw.x, batches=(1, batch))
        parity["samples_from"] = raw.info
        teacher = ckpt.get("teacher") or {}
        manifest = {
            "schema_version": 1, "task": ckpt["task"], "class_names": list(ckpt["class_names"]),
            "input": inp,
            "output": {"name": "logits",
                       "activation": "sigmoid" if ckpt["task"] == "multilabel" else "softmax"},
            "preprocess": {**spec, "in_graph": True},
            "artifacts": [{
                "id": "onnx-fp32", "path": MODEL_FILE, "format": "onnx", "precision": "fp32",
                "backend": "onnxruntime", "files": [MODEL_FILE], "opset": checks["opset"],
                "ir_version": checks["ir_version"], "accuracy": None, "max_batch": max_batch,
                "parity": {k: parity[k] for k in ("max_abs_diff", "top1_identical", "cases",
                                                  "batches", "atol")},
            }],
            "quantization": None,
            "provenance": {
                "student_checkpoint_sha256": sha256_file(ckpt["_path"]),
                "teacher_checkpoint_sha256": teacher.get("sha256"),
                "method": ckpt.get("method"), "arch": ckpt["model"]["arch"],
                "view": ckpt["view"], "view_info": ckpt.get("view_info"),
                "role": ckpt.get("role"), "checkpoint_metrics": ckpt.get("metrics"),
                "tools": tool_versions(),
                "export": {**asked, **checks, "slim": slim_info, "parity": parity},
            },
            "files": {},
        }
        finish_manifest(tmp, manifest)
    return out
