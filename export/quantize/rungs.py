"""What a backend's quantization ladder builds: the ``Quantizer`` base, and the table by backend name.

Each backend's quantizer lives in its export target module (``export/targets/<backend>.py``), named
by its declaration (``BackendSpec.quantizer``). A quantizer knows its backend's rungs (in order),
how to build each rung's candidate in a scratch directory, and how to place the accepted candidate
into the bundle as an :class:`Artifact`; candidates run on the validation inputs through the
backend's runtime runner (``Quantizer.run``: the same engine the device uses). The ladder
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

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from cmkd_edge.runtime.contract.manifest import Artifact

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
        faster = self.int8_float_nodes(fp32_qat)
        info = ortq.quantize_int8(fp32_qat, out, self.calib.x, "minmax", types, keep + faster)
        info["excluded_nodes"] = []
        info["float_for_speed"] = faster
        rec["export"]["qdq"] = {"quantizer": "onnxruntime quantize_static (the PTQ rungs')",
                                "calib_method": "minmax", "types": types.get("name"),
                                "preprocessing_kept_float": len(keep)}
        self.qat_record = rec
        return {**info, "qat": rec}

    def int8_float_nodes(self, model: Path) -> list[str]:
        """Layers this backend runs faster in float than in INT8, kept float in its INT8 models
        (none by default)."""
        return []

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
