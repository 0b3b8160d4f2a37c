"""``quantize_bundle``: calibrate, quantize, gate on the task metric, fall back rung by rung.

The ladder (field notes, complaint 1), first rung that passes the gate wins:

* onnxruntime, int8: QDQ with the chosen calibration method -> the other calibration methods ->
  QDQ with the most sensitive layers kept in float -> FP16 -> FP32.
* openvino, int8: NNCF PTQ -> NNCF accuracy control (reverts sensitive layers itself) -> FP16 IR
  -> FP32. NNCF has no minmax/entropy/percentile switch, so ``--calib-method`` applies to ORT only.
* fp16 (either backend): FP16 -> FP32.

Every rung tried is recorded in ``manifest.quantization["<backend>:<precision>"]`` with its accuracy, drop and
worst class, and which one was accepted. Candidates are built in a scratch directory; only the
accepted one is copied into the bundle, whose update is atomic (``export.bundle.edit_bundle``). When
no quantized rung passes, FP32 stays the only artifact for that backend and the record says so.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cmkd_edge.errors import QuantizationError

BACKENDS = ("onnxruntime", "openvino")
PRECISIONS = ("int8", "fp16")
ARTIFACT_IDS = {"onnxruntime": ("onnx-int8", "onnx-fp16"),
                "openvino": ("openvino-int8", "openvino-fp16")}


def _ladder(backend: str, precision: str, method: str) -> list[dict[str, Any]]:
    from cmkd_edge.export.quantize.calib import CALIB_METHODS

    rungs: list[dict[str, Any]] = []
    if precision == "int8" and backend == "onnxruntime":
        for m in [method, *[m for m in CALIB_METHODS if m != method]]:
            rungs.append({"rung": f"int8-{m}", "precision": "int8", "calib_method": m})
        rungs.append({"rung": "int8-sensitive-float", "precision": "int8"})
    elif precision == "int8":
        rungs += [{"rung": "int8-nncf-ptq", "precision": "int8", "calib_method": "nncf"},
                  {"rung": "int8-nncf-accuracy-control", "precision": "int8",
                   "calib_method": "nncf"}]
    rungs += [{"rung": "fp16", "precision": "fp16"}, {"rung": "fp32", "precision": "fp32"}]
    return rungs


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
    from cmkd_edge.export.bundle import drop_artifacts, edit_bundle, set_artifact
    from cmkd_edge.export.quantize import calib as calib_mod
    from cmkd_edge.export.quantize.calib import CALIB_METHODS
    from cmkd_edge.export.quantize.gate import Gate, judge, resolution

    if backend not in BACKENDS:
        raise QuantizationError(f"unknown backend {backend!r}", f"choose {' or '.join(BACKENDS)}")
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
    with edit_bundle(bundle) as (root, manifest), \
            tempfile.TemporaryDirectory(prefix=".cmkd-quant-", dir=root.parent) as scratch_dir:
        scratch = Path(scratch_dir)
        fp32_art = next((a for a in manifest["artifacts"] if a["id"] == "onnx-fp32"), None)
        if fp32_art is None:
            raise QuantizationError("the bundle has no onnx-fp32 artifact to quantize",
                                    "re-export it with `cmkd-edge export`")
        fp32 = root / fp32_art["path"]
        classes = list(manifest["class_names"])
        recorded = calib_mod.Recorded.from_manifest(manifest, root)
        if calib_data is None:
            calib_data = recorded.path
        calib = calib_mod.load_calibration(manifest, calib_data, calib_split, calib_size, seed,
                                           recorded) if precision == "int8" else None
        val = calib_mod.load_validation(manifest, val_data if val_data is not None else calib_data,
                                        val_split, seed, recorded)
        builder = _Builder(backend, fp32, scratch, calib, val, gate)
        ref = builder.reference()
        rungs, accepted = [], None
        for rung in _ladder(backend, precision, calib_method):
            say(f"rung {rung['rung']}")
            try:
                files, logits, info = builder.build(rung)
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
        drop_artifacts(manifest, [ARTIFACT_IDS[backend][PRECISIONS.index(precision)]])
        fp32_top1 = judge(ref, ref, val.labels, classes, gate)["top1"]
        fp32_art["accuracy"] = {"top1": fp32_top1, "split": val_split, "backend": backend}
        rung, files, verdict = accepted if accepted else ({"rung": "fp32", "precision": "fp32"},
                                                          [], None)
        if files:
            art = _place(root, backend, rung["precision"], files)
            art.update(accuracy={"top1": verdict["top1"], "split": val_split,
                                 "fp32_top1": fp32_top1, "drop": verdict["drop"]},
                       gate_passed=True, rung=rung["rung"])
            set_artifact(manifest, art)
        record = {
            "backend": backend, "requested_precision": precision,
            "method": "static-qdq" if backend == "onnxruntime" else "nncf-ptq",
            "int8_types": builder.types if backend == "onnxruntime" and precision == "int8" else None,
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
        manifest["quantization"] = {**(manifest.get("quantization") or {}), key: record}
    return record


def _place(root: Path, backend: str, precision: str, files: list[Path]) -> dict[str, Any]:
    """Copy the accepted candidate's files into the bundle; return its artifact entry."""
    if backend == "onnxruntime":
        rel = f"model.{precision}.onnx"
        shutil.copyfile(files[0], root / rel)
        import onnx

        m = onnx.load(str(root / rel), load_external_data=False)
        opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        return {"id": f"onnx-{precision}", "path": rel, "format": "onnx", "precision": precision,
                "backend": "onnxruntime", "files": [rel], "opset": opset,
                "ir_version": int(m.ir_version)}
    (root / "openvino").mkdir(exist_ok=True)
    rels = [f"openvino/model.{precision}{p.suffix}" for p in files]
    for src, rel in zip(files, rels, strict=True):
        shutil.copyfile(src, root / rel)
    import openvino as ov

    return {"id": f"openvino-{precision}", "path": rels[0], "format": "openvino-ir",
            "precision": precision, "backend": "openvino", "files": rels,
            "openvino": ov.get_version()}


class _Builder:
    """Builds each rung's candidate in ``scratch`` and runs it on the validation inputs."""

    def __init__(self, backend: str, fp32: Path, scratch: Path, calib: Any, val: Any,
                 gate: Any) -> None:
        self.backend, self.fp32, self.scratch = backend, fp32, scratch
        self.calib, self.val, self.gate = calib, val, gate
        self.types: dict[str, Any] | None = None
        self.best_int8: tuple[float, Path, str] | None = None  # best QDQ so far: drop, path, method
        self.ref: Any = None

    def reference(self) -> Any:
        from cmkd_edge.export.quantize.gate import run_onnxruntime, run_openvino

        self.ref = (run_onnxruntime(self.fp32, self.val.x) if self.backend == "onnxruntime"
                    else run_openvino(self.fp32, self.val.x))
        return self.ref

    def _run(self, path: Path) -> Any:
        from cmkd_edge.export.quantize.gate import run_onnxruntime, run_openvino

        return run_onnxruntime(path, self.val.x) if path.suffix == ".onnx" else \
            run_openvino(path, self.val.x)

    def build(self, rung: dict[str, Any]) -> tuple[list[Path], Any, dict[str, Any]]:
        """Return (files, validation logits, info) for ``rung``; FP32 has no files."""
        import onnx
        from cmkd_edge.export.onnx import preprocessing_nodes
        from cmkd_edge.export.quantize import openvino as ovq
        from cmkd_edge.export.quantize import ort as ortq
        from cmkd_edge.export.quantize.gate import top1

        name = rung["rung"]
        if rung["precision"] == "fp32":
            return [], self.ref, {}
        keep = preprocessing_nodes(onnx.load(str(self.fp32)))
        if self.backend == "onnxruntime":
            out = self.scratch / f"{name}.onnx"
            info: dict[str, Any] = {}
            if rung["precision"] == "fp16":
                info = ortq.convert_fp16(self.fp32, out, keep)
            elif name == "int8-sensitive-float":
                if self.best_int8 is None:
                    raise QuantizationError("no INT8 candidate to take sensitive layers from")
                n_ops = len(ortq.op_outputs(onnx.load(str(self.fp32))))
                k = max(1, math.ceil(0.15 * n_ops))
                ranked = ortq.sensitive_nodes(self.fp32, self.best_int8[1], self.calib.x[:16], k)
                method = self.best_int8[2]
                info = ortq.quantize_int8(self.fp32, out, self.calib.x, method, self.types,
                                          keep + [r["node"] for r in ranked])
                info["sensitive"] = ranked
                info["excluded_nodes"] = [r["node"] for r in ranked]
            else:
                self.types = self.types or ortq.choose_int8_types()
                info = ortq.quantize_int8(self.fp32, out, self.calib.x, rung["calib_method"],
                                          self.types, keep)
                info["excluded_nodes"] = []  # preprocessing is always kept; record layers only
            logits = self._run(out)
            if rung["precision"] == "int8":
                drop = top1(self.ref, self.val.labels) - top1(logits, self.val.labels)
                if self.best_int8 is None or drop < self.best_int8[0]:
                    self.best_int8 = (drop, out, info.get("calib_method", "minmax"))
            return [out], logits, {**info, "preprocessing_kept_float": len(keep)}
        xml = self.scratch / name / "model.xml"
        xml.parent.mkdir()
        if rung["precision"] == "fp16":
            files = ovq.save_ir(ovq.fp16_model(self.fp32), xml, fp16=True)
        elif name == "int8-nncf-accuracy-control":
            model = ovq.quantize_accuracy_control(self.fp32, self.calib.x, self.val.x,
                                                  self.val.labels, self.gate.max_drop, top1)
            files = ovq.save_ir(model, xml)
        else:
            files = ovq.save_ir(ovq.quantize_ptq(self.fp32, self.calib.x), xml)
        return files, self._run(xml), {}
