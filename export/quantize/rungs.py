"""What each backend's quantization ladder builds: one small class per backend, chosen by name.

A quantizer knows its backend's rungs (in order), how to build each rung's candidate in a scratch
directory, how to run a candidate on the validation inputs (the same engine the device uses), and
how to place the accepted candidate into the bundle as an :class:`Artifact`. The ladder
(``ladder.py``) only walks the rungs and gates; it never branches on a backend's name.

* ``onnxruntime``, int8: QDQ with the chosen calibration method -> the other calibration methods ->
  teacher-guided QAT (``int8-qat``, when a plan is given) -> QDQ with the most sensitive layers kept
  in float -> FP16 -> FP32.
* ``openvino``, int8: NNCF PTQ -> ``int8-qat`` (the same QAT QDQ ONNX, read by OpenVINO) -> NNCF
  accuracy control (reverts sensitive layers itself) -> FP16 IR -> FP32. NNCF has no
  minmax/entropy/percentile switch, so ``--calib-method`` applies to ORT only.

QAT sits after the PTQ rungs (it costs a fine-tune, minutes) and before the rungs that keep layers in
float (they are slower: every float layer is a float kernel plus Q/DQ at its edges).
* fp16 (either backend): FP16 -> FP32.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from cmkd_edge.runtime.manifest import Artifact

from cmkd_edge.errors import QuantizationError

PRECISIONS = ("int8", "fp16")

Rung = dict[str, Any]


class Quantizer:
    """One backend's ladder. Subclasses set the class attributes and implement the hooks."""

    backend: ClassVar[str]
    method: ClassVar[str]  # recorded as ``quantization[...]["method"]``
    id_prefix: ClassVar[str]  # artifact ids are ``<id_prefix>-<precision>``

    def __init__(self, fp32: Path, scratch: Path, calib: Any, val: Any, max_drop: float,
                 qat: Any = None, target: Any = None) -> None:
        self.fp32, self.scratch, self.calib, self.val, self.max_drop = fp32, scratch, calib, val, max_drop
        self.target = target  # a device_profiles.DeviceProfile (None: this machine)
        self.ref: np.ndarray | None = None
        self.qat = qat  # a ``qat.QatPlan``: the int8-qat rung is offered only with one
        self.qat_record: dict[str, Any] | None = None
        self.qat_files: list[Path] = []

    @classmethod
    def artifact_id(cls, precision: str) -> str:
        return f"{cls.id_prefix}-{precision}"

    def rungs(self, precision: str, calib_method: str) -> list[Rung]:
        """The rungs to try for ``precision``, best first; FP16 and FP32 close every ladder."""
        return [{"rung": "fp16", "precision": "fp16"}, {"rung": "fp32", "precision": "fp32"}]

    def reference(self) -> np.ndarray:
        """FP32 logits on the validation inputs, run by this backend."""
        self.ref = self.run(self.fp32)
        return self.ref

    def run(self, model: Any, x: np.ndarray | None = None) -> np.ndarray:
        """Logits of ``model`` on ``x`` (default: the validation inputs), run by this backend's
        runtime runner (the FP32 reference too: each backend judges against its own FP32)."""
        from cmkd_edge.export.quantize.gate import run

        return run(self.backend, model, self.val.x if x is None else x, **self.run_options())

    def run_options(self) -> dict[str, Any]:
        """Options of this backend's runner for the gate (default: none)."""
        return {}

    def build(self, rung: Rung) -> tuple[list[Path], np.ndarray, dict[str, Any]]:
        """Return (files, validation logits, info) for ``rung``; FP32 has no files."""
        raise NotImplementedError

    def place(self, root: Path, precision: str, files: list[Path]) -> Artifact:
        """Copy the accepted candidate's files into the bundle; return its artifact."""
        raise NotImplementedError

    def record(self, precision: str) -> dict[str, Any]:
        """Backend-specific fields of the quantization record."""
        return {"int8_types": None}

    def _qat_extra(self, files: list[Path]) -> dict[str, Any]:
        """The QAT summary for an accepted ``int8-qat`` artifact (epochs, losses, teacher, data)."""
        if not files or files[:1] != self.qat_files[:1] or self.qat_record is None:
            return {}
        r = self.qat_record
        return {"qat": {"epochs": len(r["epochs"]), "losses": r["epochs"],
                        "teacher": r["teacher"], "data": r["data"],
                        "student_sha256": r["student_sha256"], "config": r["config"]}}

    def _qat_rung(self, precision: str) -> list[Rung]:
        return ([{"rung": "int8-qat", "precision": "int8", "calib_method": "qat"}]
                if precision == "int8" and self.qat is not None else [])

    def _qat_qdq(self, out: Path, say: Any = None) -> dict[str, Any]:
        """The QAT rung's QDQ ONNX at ``out``: fine-tune (``qat.py``), export the fine-tuned FP32
        student, quantize it with the PTQ rungs' own ORT quantizer (minmax on the calibration
        sample, the CPU's QDQ types, preprocessing float)."""
        from cmkd_edge.export.quantize import ort as ortq
        from cmkd_edge.export.quantize import qat as qatm

        types = getattr(self, "types", None) or ortq.choose_int8_types(self.target)
        fp32_qat = out.with_name(out.stem + ".fp32.onnx")
        rec = qatm.qat_fp32_onnx(self.qat, types, self.fp32, fp32_qat, say or (lambda _m: None))
        keep = self._keep_float_of(fp32_qat)
        info = ortq.quantize_int8(fp32_qat, out, self.calib.x, "minmax", types, keep)
        info["excluded_nodes"] = []
        rec["export"]["qdq"] = {"quantizer": "onnxruntime quantize_static (the PTQ rungs')",
                                "calib_method": "minmax", "types": types.get("name"),
                                "preprocessing_kept_float": len(keep)}
        self.qat_record = rec
        return {**info, "qat": rec}

    @staticmethod
    def _keep_float_of(model: Path) -> list[str]:
        import onnx
        from cmkd_edge.export.onnx import preprocessing_nodes

        return preprocessing_nodes(onnx.load(str(model)))

    def _keep_float(self) -> list[str]:
        """Preprocessing nodes (band selection, dB, clip, normalisation): always kept in float."""
        import onnx
        from cmkd_edge.export.onnx import preprocessing_nodes

        return preprocessing_nodes(onnx.load(str(self.fp32)))


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
        elif name == "int8-qat":
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
                                      keep + [r["node"] for r in ranked])
            info["sensitive"] = ranked
            info["excluded_nodes"] = [r["node"] for r in ranked]
        else:
            self.types = self.types or ortq.choose_int8_types(self.target)
            info = ortq.quantize_int8(self.fp32, out, self.calib.x, rung["calib_method"],
                                      self.types, keep)
            info["excluded_nodes"] = []  # preprocessing is always kept; record layers only
        logits = self.run(out)
        if rung["precision"] == "int8" and name != "int8-qat":  # QAT's graph names differ
            drop = top1(self.ref, self.val.labels) - top1(logits, self.val.labels)
            if self.best_int8 is None or drop < self.best_int8[0]:
                self.best_int8 = (drop, out, info.get("calib_method", "minmax"))
        return [out], logits, {**info, "preprocessing_kept_float": len(keep)}

    def place(self, root: Path, precision: str, files: list[Path]) -> Artifact:
        import onnx

        rel = f"model.{precision}.onnx"
        shutil.copyfile(files[0], root / rel)
        m = onnx.load(str(root / rel), load_external_data=False)
        opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        return Artifact(id=self.artifact_id(precision), path=rel, format="onnx",
                        precision=precision, backend=self.backend, files=(rel,), opset=opset,
                        ir_version=int(m.ir_version), extra=self._qat_extra(files))

    def record(self, precision: str) -> dict[str, Any]:
        if precision != "int8":
            return {"int8_types": None}
        how, why = self.arithmetic()
        return {"int8_types": self.types, "gate_arithmetic": how, "gate_arithmetic_why": why}


class NncfQuantizer(Quantizer):
    """NNCF post-training quantization of the OpenVINO model, then NNCF accuracy control."""

    backend, method, id_prefix = "openvino", "nncf-ptq", "openvino"

    def rungs(self, precision: str, calib_method: str) -> list[Rung]:
        out: list[Rung] = []
        if precision == "int8":
            out = [{"rung": "int8-nncf-ptq", "precision": "int8", "calib_method": "nncf"},
                   *self._qat_rung(precision),
                   {"rung": "int8-nncf-accuracy-control", "precision": "int8",
                    "calib_method": "nncf"}]
        return out + super().rungs(precision, calib_method)

    def build(self, rung: Rung) -> tuple[list[Path], np.ndarray, dict[str, Any]]:
        from cmkd_edge.export.quantize import openvino as ovq
        from cmkd_edge.export.quantize.gate import top1

        name = rung["rung"]
        if rung["precision"] == "fp32":
            return [], self.ref, {}
        xml = self.scratch / name / "model.xml"
        xml.parent.mkdir()
        info: dict[str, Any] = {}
        if rung["precision"] == "fp16":
            files = ovq.save_ir(ovq.fp16_model(self.fp32), xml, fp16=True)
        elif name == "int8-qat":
            qdq = self.scratch / "int8-qat.onnx"
            info = self._qat_qdq(qdq)
            files = ovq.save_ir(ovq.fp16_model(qdq), xml)  # OpenVINO reads the QDQ as INT8
            self.qat_files = files[:1]
        elif name == "int8-nncf-accuracy-control":
            model = ovq.quantize_accuracy_control(self.fp32, self.calib.x, self.val.x,
                                                  self.val.labels, self.max_drop, top1)
            files = ovq.save_ir(model, xml)
        else:
            files = ovq.save_ir(ovq.quantize_ptq(self.fp32, self.calib.x), xml)
        return files, self.run(xml), info

    def record(self, precision: str) -> dict[str, Any]:
        """Whether this INT8 IR's gate (run here) holds on the target device (device rule)."""
        if precision != "int8" or self.target is None:
            return super().record(precision)
        from cmkd_edge.runtime.device_profiles import openvino_int8_transfers

        holds, why = openvino_int8_transfers(self.target)
        return {"int8_types": None, "gate_holds_on_target": holds, "target_note": why}

    def place(self, root: Path, precision: str, files: list[Path]) -> Artifact:
        import openvino as ov

        (root / "openvino").mkdir(exist_ok=True)
        rels = tuple(f"openvino/model.{precision}{p.suffix}" for p in files)
        for src, rel in zip(files, rels, strict=True):
            shutil.copyfile(src, root / rel)
        return Artifact(id=self.artifact_id(precision), path=rels[0], format="openvino-ir",
                        precision=precision, backend=self.backend, files=rels,
                        extra={"openvino": ov.get_version(), **self._qat_extra(files)})


def quantizers() -> dict[str, type[Quantizer]]:
    """Quantizers by backend name (``--backend`` of ``cmkd-edge quantize``), from the backends'
    declarations (``BackendSpec.quantizer``): a backend that declares none is not a target."""
    import importlib

    from cmkd_edge.runtime.backends import specs

    out: dict[str, type[Quantizer]] = {}
    for spec in specs():
        if spec.quantizer:
            module, _, name = spec.quantizer.partition(":")
            out[spec.name] = getattr(importlib.import_module(module), name)
    return out
