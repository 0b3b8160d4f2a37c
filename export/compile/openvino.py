"""OpenVINO IR from the bundle's FP32, FP16-compressed or INT8 (QDQ) ONNX, compiled once as a check.

OpenVINO runs ONNX directly, but an IR (xml/bin) loads faster and is what OpenVINO's tools expect
on a device. The IR is converted here, compiled on the CPU of this machine (the only device present;
``--device`` is recorded as the intended target, and compiling for GPU/NPU happens on the device),
and a model cache directory can be given so the first load on the target is not paid twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from cmkd_edge.runtime.backends import backend_spec
from cmkd_edge.runtime.manifest import Artifact

from cmkd_edge.errors import BackendUnavailableError, BundleError, ExportValidationError

DEVICES = ("CPU", "GPU", "NPU")
PRECISIONS = ("fp32", "fp16", "int8")  # the first is what `compile` builds by default


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
