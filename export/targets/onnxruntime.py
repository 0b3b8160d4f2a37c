"""ONNX Runtime's export side: its quantizer (static QDQ with calibration fallbacks, named by the
backend's declaration, ``BackendSpec.quantizer``).

ONNX Runtime runs the bundle's ONNX as it is, so it has no compile hook; its tool wrappers
(``quantize/ort.py``: quantize_static, the FP16 converter, layer sensitivity) are shared with the
QAT rung every backend's ladder offers.
"""

from __future__ import annotations

import functools
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from cmkd_edge.export.quantize.rungs import Quantizer, Rung
from cmkd_edge.runtime.contract.manifest import Artifact

from cmkd_edge.errors import QuantizationError


class OrtQuantizer(Quantizer):
    """ONNX Runtime static QDQ (types chosen from the CPU flags) with calibration fallbacks."""

    backend, method, id_prefix = "onnxruntime", "static-qdq", "onnx"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.types: dict[str, Any] | None = None
        self.best_int8: tuple[float, Path, str] | None = None  # best QDQ so far: drop, path, method

    def rungs(self, precision: str, calib_method: str) -> list[Rung]:
        from cmkd_edge.export.quantize.calib import CALIB_METHODS

        out: list[Rung] = []
        if precision == "int8":
            for m in [calib_method, *[m for m in CALIB_METHODS if m != calib_method]]:
                out.append({"rung": f"int8-{m}", "precision": "int8", "calib_method": m})
            out += self._qat_rung(precision)
            out.append({"rung": "int8-sensitive-float", "precision": "int8"})
        return out + super().rungs(precision, calib_method)

    def run_options(self) -> dict[str, Any]:
        """The gate runner's options: reference QDQ arithmetic where this host does not have the
        target's integer kernels (device rule ``gate_arithmetic``)."""
        return {"optimize": self.arithmetic()[0] == "native"}

    def arithmetic(self) -> tuple[str, str]:
        """How this host runs the target's QDQ for the gate (device rule ``gate_arithmetic``)."""
        from cmkd_edge.runtime.device_profiles import gate_arithmetic, host_profile

        return gate_arithmetic(self.target if self.target is not None else host_profile())

    def build(self, rung: Rung) -> tuple[list[Path], np.ndarray, dict[str, Any]]:
        import onnx
        from cmkd_edge.export.quantize import ort as ortq
        from cmkd_edge.export.quantize.gate import top1

        name = rung["rung"]
        if rung["precision"] == "fp32":
            return [], self.ref, {}
        keep = self._keep_float()
        out = self.scratch / f"{name}.onnx"
        info: dict[str, Any] = {}
        if rung["precision"] == "fp16":
            info = ortq.convert_fp16(self.fp32, out, keep)
            return [out], self.run(out), {**info, "preprocessing_kept_float": len(keep)}
        # the QAT rung keeps the same layers float itself (``Quantizer._qat_qdq``)
        faster = self.fp32_float_nodes
        if name == "int8-qat":
            self.types = self.types or ortq.choose_int8_types(self.target)
            info = self._qat_qdq(out)
            self.qat_files = [out]
        elif name == "int8-sensitive-float":
            if self.best_int8 is None:
                raise QuantizationError("no INT8 candidate to take sensitive layers from")
            n_ops = len(ortq.op_outputs(onnx.load(str(self.fp32))))
            k = max(1, math.ceil(0.15 * n_ops))
            ranked = ortq.sensitive_nodes(self.fp32, self.best_int8[1], self.calib.x[:16], k)
            method = self.best_int8[2]
            info = ortq.quantize_int8(self.fp32, out, self.calib.x, method, self.types,
                                      keep + faster + [r["node"] for r in ranked])
            info["sensitive"] = ranked
            info["excluded_nodes"] = [r["node"] for r in ranked]
        else:
            self.types = self.types or ortq.choose_int8_types(self.target)
            info = ortq.quantize_int8(self.fp32, out, self.calib.x, rung["calib_method"],
                                      self.types, keep + faster)
            info["excluded_nodes"] = []  # preprocessing is always kept; record layers only
        if name != "int8-qat":
            info["float_for_speed"] = faster
        logits = self.run(out)
        if rung["precision"] == "int8" and name != "int8-qat":  # QAT's graph names differ
            drop = top1(self.ref, self.val.labels) - top1(logits, self.val.labels)
            if self.best_int8 is None or drop < self.best_int8[0]:
                self.best_int8 = (drop, out, info.get("calib_method", "minmax"))
        return [out], logits, {**info, "preprocessing_kept_float": len(keep)}

    @functools.cached_property
    def fp32_float_nodes(self) -> list[str]:
        """``int8_float_nodes`` of the bundle's FP32 model (read once, shared by every rung)."""
        return self.int8_float_nodes(self.fp32)

    def int8_float_nodes(self, model: Path) -> list[str]:
        """A single-channel stem convolution and its activation/pool (``ort.float_stem_nodes``)."""
        import onnx
        from cmkd_edge.export.quantize import ort as ortq

        return ortq.float_stem_nodes(onnx.load(str(model), load_external_data=False))

    def place(self, root: Path, precision: str, files: list[Path]) -> Artifact:
        import onnx
        from cmkd_edge.export.quantize import ort as ortq

        rel = f"model.{precision}.onnx"
        shutil.copyfile(files[0], root / rel)
        m = onnx.load(str(root / rel), load_external_data=False)
        opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        disabled = (ortq.FLOAT_STEM_DISABLED_OPTIMIZERS if precision == "int8" and self.fp32_float_nodes
                    else None)
        return Artifact(id=self.artifact_id(precision), path=rel, format="onnx",
                        precision=precision, backend=self.backend, files=(rel,), opset=opset,
                        ir_version=int(m.ir_version), disabled_optimizers=disabled,
                        extra=self._qat_extra(files))

    def record(self, precision: str) -> dict[str, Any]:
        if precision != "int8":
            return {"int8_types": None}
        how, why = self.arithmetic()
        return {"int8_types": self.types, "gate_arithmetic": how, "gate_arithmetic_why": why}
