"""OpenVINO's export side: the compile hook and the quantizer its declaration names, and NNCF.

Compile: OpenVINO IR from the bundle's FP32, FP16-compressed or INT8 (QDQ) ONNX, compiled once as a
check. OpenVINO runs ONNX directly, but an IR (xml/bin) loads faster and is what OpenVINO's tools expect
on a device. The IR is converted here, compiled on the CPU of this machine (the only device present;
``--device`` is recorded as the intended target, and compiling for GPU/NPU happens on the device),
and a model cache directory can be given so the first load on the target is not paid twice.

Quantize: INT8 through NNCF post-training quantization, and FP16-compressed IR. NNCF quantizes the
OpenVINO model read from the bundle's ONNX; the preprocessing ops (everything between the input and
the first convolution: band gather, log, clamp, normalisation) are put in NNCF's ignored scope so
raw reflectances are never squeezed into 8 bits. With validation data the accuracy-aware variant
(``quantize_with_accuracy_control``) reverts the most sensitive layers to float until the drop is
within ``max_drop``. ``import nncf`` pulls in torch and takes seconds, so it happens only inside
these functions (never on the CLI's or the runtime's import path).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from cmkd_edge.export.quantize.rungs import Quantizer, Rung
from cmkd_edge.runtime.backends import backend_spec
from cmkd_edge.runtime.contract.manifest import Artifact

from cmkd_edge.errors import BackendUnavailableError, BundleError, ExportValidationError, QuantizationError

DEVICES = ("CPU", "GPU", "NPU")
COMPILE_PRECISIONS = ("fp32", "fp16", "int8")  # the first is what `compile` builds by default
CONV_TYPES = ("Convolution", "GroupConvolution", "MatMul")


def convert(onnx_path: Path, xml: Path, fp16: bool) -> list[Path]:
    """ONNX -> IR; ``fp16`` compresses weights to float16 (OpenVINO keeps compute precision
    per device: CPU runs FP32/BF16, GPU runs FP16)."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailableError("openvino is not installed", backend_spec("openvino").install_hint) from exc
    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml), compress_to_fp16=fp16)
    return [xml, xml.with_suffix(".bin")]


def compile_check(xml: Path, sample: np.ndarray, cache_dir: Path | None = None) -> dict[str, Any]:
    """Compile the IR on CPU and run one batch; return what was checked.

    Raises:
        ExportValidationError: the IR does not compile or gives non-finite or wrongly shaped output.
    """
    from cmkd_edge.runtime.backends.openvino import OpenVinoRunner, core

    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    # the runtime's runner, as the gate compiles: CPU, one thread, the runner's f32 precision
    runner = OpenVinoRunner(xml, threads=1, device="CPU", performance_hint=None, cache_dir=cache_dir)
    try:
        with runner:
            x = np.ascontiguousarray(sample, dtype=np.float32)
            out = runner.infer({next(iter(runner.input_specs())): x})[runner.output_names()[0]]
            version = runner.describe()["version"]
    except BackendUnavailableError:
        raise
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc, BundleError) and exc.__cause__ else exc
        raise ExportValidationError(f"OpenVINO could not compile {xml.name} on CPU: "
                                    f"{str(cause).strip().splitlines()[0]}") from exc
    if out.shape[0] != sample.shape[0] or not np.isfinite(out).all():
        raise ExportValidationError(f"{xml.name} gave output {out.shape} with non-finite values "
                                    f"for a batch of {sample.shape[0]}")
    return {"compiled_on": "CPU", "output_shape": list(out.shape),
            "available_devices": list(core().available_devices), "openvino": version}


def compile_artifact(root: Path, src: Artifact, precision: str, *, sample: np.ndarray,
                     device: str = "CPU", cache_dir: Path | None = None, **_: Any) -> Artifact:
    """The OpenVINO backend's compile hook: an IR of ``src`` in the bundle at ``root``, checked.

    Never gated here: an INT8 IR is re-gated on OpenVINO by the caller (``compile.regate``).
    """
    from cmkd_edge.errors import ConfigError

    if device not in DEVICES:
        raise ConfigError(f"unknown OpenVINO device {device!r}", f"choose one of {', '.join(DEVICES)}")
    rel = f"openvino/model.ir-{precision}.xml"
    (root / "openvino").mkdir(exist_ok=True)
    files = convert(root / src.path, root / rel, fp16=precision == "fp16")
    check = compile_check(root / rel, sample, cache_dir)
    return Artifact(id=f"openvino-ir-{precision}", path=rel, format="openvino-ir",
                    precision=precision, backend="openvino",
                    files=tuple(p.relative_to(root).as_posix() for p in files), source=src.id,
                    gate_passed=None, extra={"device": device, "check": check})


# -- quantize: NNCF ------------------------------------------------------------------------------

def preprocessing_ops(model: Any) -> list[str]:
    """Friendly names of the ops between the Parameter and the first convolution."""
    ops = model.get_ordered_ops()
    first = next((op for op in ops if op.get_type_name() in CONV_TYPES), None)
    if first is None:
        return []
    seen: dict[str, Any] = {}
    stack = [first.input_value(0).get_node()]
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in seen or node.get_type_name() in ("Parameter", "Constant"):
            continue
        seen[name] = node
        stack.extend(v.get_node() for v in node.input_values())
    return sorted(seen)


@contextlib.contextmanager
def _nncf_quiet() -> Iterator[None]:
    """Silence NNCF's own progress bar and INFO lines while it runs.

    Why: NNCF draws its bar on rich's global console, i.e. on stdout, so a piped ``quantize`` report
    got a second progress bar mixed into it; ``cmkd-edge quantize`` shows one bar of its own.
    """
    import logging

    import nncf
    import rich
    from nncf.common.logging import nncf_logger

    console = rich.get_console()
    quiet, level = console.quiet, nncf_logger.level
    console.quiet = True
    nncf.set_log_level(logging.WARNING)
    try:
        yield
    finally:
        console.quiet = quiet
        nncf.set_log_level(level)


def _dataset(x: np.ndarray, batch: int = 1) -> Any:
    import nncf

    items = [np.ascontiguousarray(x[i:i + batch]) for i in range(0, len(x), batch)]
    return nncf.Dataset(items)


def quantize_ptq(onnx_path: Path, calib_x: np.ndarray, ignored: list[str] | None = None) -> Any:
    """NNCF PTQ (performance preset, CPU) of the ONNX model read by OpenVINO; returns an ov.Model."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    keep = preprocessing_ops(model) + list(ignored or [])
    try:
        with _nncf_quiet():
            return nncf.quantize(model, _dataset(calib_x), subset_size=len(calib_x),
                                 target_device=nncf.TargetDevice.CPU,
                                 ignored_scope=nncf.IgnoredScope(names=keep, validate=False))
    except Exception as exc:
        raise QuantizationError(f"nncf.quantize failed: {str(exc).strip().splitlines()[0]}") from exc


def quantize_accuracy_control(onnx_path: Path, calib_x: np.ndarray, val_x: np.ndarray,
                              val_y: np.ndarray, max_drop_points: float,
                              accuracy: Callable[[np.ndarray, np.ndarray], float]) -> Any:
    """``nncf.quantize_with_accuracy_control`` with top-1 on the validation split as the metric."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    val_items = [(val_x[i:i + 1], val_y[i]) for i in range(len(val_x))]

    def validate(compiled: Any, data: Any) -> float:
        items = list(data)
        logits = np.concatenate([compiled(x)[0] for x, _ in items])
        return accuracy(logits, np.asarray([y for _, y in items]))

    try:
        with _nncf_quiet():
            return nncf.quantize_with_accuracy_control(
                model, _dataset(calib_x), nncf.Dataset(val_items, lambda item: item[0]), validate,
                max_drop=max_drop_points / 100.0, drop_type=nncf.DropType.ABSOLUTE,
                subset_size=len(calib_x), target_device=nncf.TargetDevice.CPU,
                ignored_scope=nncf.IgnoredScope(names=preprocessing_ops(model), validate=False))
    except Exception as exc:
        raise QuantizationError("nncf.quantize_with_accuracy_control failed: "
                                f"{str(exc).strip().splitlines()[0]}") from exc


def fp16_model(onnx_path: Path) -> Any:
    """The FP32 model read by OpenVINO; saved with ``compress_to_fp16`` it becomes FP16 weights."""
    import openvino as ov

    return ov.Core().read_model(str(onnx_path))


def save_ir(model: Any, xml: Path, fp16: bool = False) -> list[Path]:
    """Write ``model`` as IR (xml + bin); returns both paths."""
    import openvino as ov

    ov.save_model(model, str(xml), compress_to_fp16=fp16)
    return [xml, xml.with_suffix(".bin")]


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
        from cmkd_edge.export.quantize.gate import top1

        name = rung["rung"]
        if rung["precision"] == "fp32":
            return [], self.ref, {}
        xml = self.scratch / name / "model.xml"
        xml.parent.mkdir()
        info: dict[str, Any] = {}
        if rung["precision"] == "fp16":
            files = save_ir(fp16_model(self.fp32), xml, fp16=True)
        elif name == "int8-qat":
            qdq = self.scratch / "int8-qat.onnx"
            info = self._qat_qdq(qdq)
            files = save_ir(fp16_model(qdq), xml)  # OpenVINO reads the QDQ as INT8
            self.qat_files = files[:1]
        elif name == "int8-nncf-accuracy-control":
            model = quantize_accuracy_control(self.fp32, self.calib.x, self.val.x,
                                                  self.val.labels, self.max_drop, top1)
            files = save_ir(model, xml)
        else:
            files = save_ir(quantize_ptq(self.fp32, self.calib.x), xml)
        return files, self.run(xml), info

    def record(self, precision: str) -> dict[str, Any]:
        """Whether this INT8 IR's gate (run here) holds on the target device (device rule)."""
        if precision != "int8" or self.target is None:
            return super().record(precision)
        from cmkd_edge.runtime.device_profiles import int8_transfers

        holds, why = int8_transfers(self.backend, self.target)
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
