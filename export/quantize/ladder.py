"""``quantize_bundle``: calibrate, quantize, gate on the task metric, fall back rung by rung.

The first rung that passes the gate wins (field notes, complaint 1); each backend's rungs are in
``rungs.py``. Every rung tried is recorded in ``manifest.quantization["<backend>:<precision>"]``
with its accuracy, drop and worst class, and which one was accepted. Candidates are built in a
scratch directory; only the accepted one is copied into the bundle, whose update is atomic
(``export.bundle.edit_bundle``). When no quantized rung passes, FP32 stays the only artifact for
that backend and the record says so.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from cmkd_edge.export.quantize.rungs import PRECISIONS, quantizers

from cmkd_edge.errors import QuantizationError


def quantize_bundle(bundle: str | os.PathLike[str], *, backend: str = "onnxruntime",
                    precision: str = "int8", calib_data: str | None = None,
                    calib_split: str = "train", calib_size: int = 128,
                    calib_method: str = "minmax", val_data: str | None = None,
                    val_split: str = "val", max_drop: float = 1.0,
                    max_class_drop: float | None = None, seed: int = 0,
                    progress: Any = None) -> dict[str, Any]:
    """Quantize a bundle's FP32 ONNX for ``backend`` behind the accuracy gate.

    Args:
        calib_data: dataset path; its ``calib_split`` (never test) is sampled. None = the training
            data export recorded in ``provenance.data`` (synthetic for bundles without a record).
        val_data: dataset for the gate (default ``calib_data``), split ``val_split``.
        seed: picks the stratified calibration subset. The split itself is always the training
            run's (its split.csv in the bundle, else drawn with the recorded training seed), so a
            "train" calibration sample cannot contain the run's test patches nor the "val" gate
            its training patches.
        max_drop: allowed top-1 drop in points; ``max_class_drop`` per class (default 3x).
        progress: optional callable(str) told about each rung.
    Returns:
        The backend's quantization record (also written to the manifest).
    Raises:
        QuantizationError: bad options or calibration data (test split, wrong channels, units).
    """
    from cmkd_edge.export.bundle import edit_bundle
    from cmkd_edge.export.quantize import calib as calib_mod
    from cmkd_edge.export.quantize.calib import CALIB_METHODS
    from cmkd_edge.export.quantize.gate import Gate, judge, resolution

    targets = quantizers()
    if backend not in targets:
        raise QuantizationError(f"unknown backend {backend!r}", f"choose {' or '.join(targets)}")
    if precision not in PRECISIONS:
        raise QuantizationError(f"unknown precision {precision!r}", f"choose {' or '.join(PRECISIONS)}")
    if calib_method not in CALIB_METHODS:
        raise QuantizationError(f"unknown calibration method {calib_method!r}",
                                f"choose one of: {', '.join(CALIB_METHODS)}")
    if max_drop < 0:
        raise QuantizationError(f"--max-drop must be >= 0 (got {max_drop})")
    say = progress or (lambda _msg: None)
    gate = Gate(max_drop, max_class_drop)
    calib_mod.check_split(calib_split)
    with edit_bundle(bundle) as edit, \
            tempfile.TemporaryDirectory(prefix=".cmkd-quant-", dir=edit.root.parent) as scratch_dir:
        root, manifest = edit.root, edit.manifest
        fp32_art = manifest.find("onnx-fp32")
        if fp32_art is None:
            raise QuantizationError("the bundle has no onnx-fp32 artifact to quantize",
                                    "re-export it with `cmkd-edge export`")
        classes = list(manifest.class_names)
        recorded = calib_mod.Recorded.from_manifest(manifest, root)
        if calib_data is None:
            calib_data = recorded.path
        calib = calib_mod.load_calibration(manifest, calib_data, calib_split, calib_size, seed,
                                           recorded) if precision == "int8" else None
        val = calib_mod.load_validation(manifest, val_data if val_data is not None else calib_data,
                                        val_split, seed, recorded)
        q = targets[backend](root / fp32_art.path, Path(scratch_dir), calib, val, gate.max_drop)
        ref = q.reference()
        rungs, accepted = [], None
        for rung in q.rungs(precision, calib_method):
            say(f"rung {rung['rung']}")
            try:
                files, logits, info = q.build(rung)
            except QuantizationError as exc:
                rungs.append({**rung, "passed": False, "error": exc.message})
                continue
            verdict = judge(ref, logits, val.labels, classes, gate)
            rungs.append({**rung, **info, **verdict})
            say(f"  top1 {verdict['top1']:.2f} (drop {verdict['drop']:+.2f}, worst class "
                f"{verdict['worst_class']} {verdict['worst_class_drop']:+.2f}) "
                f"{'PASS' if verdict['passed'] else 'fail'}")
            if verdict["passed"]:
                accepted = (rung, files, verdict)
                break
        # a re-run replaces what the same request made before, and everything compiled from it
        # (an IR or plan built from the old QDQ model); other precisions stay
        edit.drop([q.artifact_id(precision)])
        fp32_top1 = judge(ref, ref, val.labels, classes, gate)["top1"]
        edit.update(replace(fp32_art, accuracy={"top1": fp32_top1, "split": val_split,
                                                "backend": backend}))
        rung, files, verdict = accepted if accepted else ({"rung": "fp32", "precision": "fp32"},
                                                          [], None)
        if files:
            art = q.place(root, rung["precision"], files)
            edit.put(replace(art, accuracy={"top1": verdict["top1"], "split": val_split,
                                            "fp32_top1": fp32_top1, "drop": verdict["drop"]},
                             gate_passed=True, extra={**art.extra, "rung": rung["rung"]}))
        record = {
            "backend": backend, "requested_precision": precision, "method": q.method,
            **q.record(precision),
            "calibration": calib_mod.record(calib, calib_method) if calib is not None else None,
            "gate": {"metric": "top1", "max_drop": gate.max_drop, "max_class_drop": gate.class_limit,
                     "split": val_split, "n": len(val), "fp32_top1": fp32_top1,
                     "sha256": val.sha256(), "seed": val.info.get("seed"),
                     "sample_seed": val.info.get("sample_seed"),
                     "split_table": val.info.get("split_table"),
                     "resolution": resolution(val.top1_labels()), "data": val.info.get("data"),
                     "synthetic": val.info.get("synthetic")},
            "rungs": rungs, "accepted": rung["rung"], "accepted_precision": rung["precision"],
            "passed": accepted is not None and rung["precision"] != "fp32",
        }
        key = f"{backend}:{precision}"
        edit.manifest = replace(edit.manifest,
                                quantization={**(edit.manifest.quantization or {}), key: record})
    return record
