"""TensorRT's export side (its compile hook): engines from the bundle's ONNX, with the runtime's builder.

The build itself is ``cmkd_edge.runtime.backends.trt_build.build_engine`` (flags, profile, atomic plan write,
per-device timing cache are documented there), the same function the runtime uses to rebuild a
plan on the device, so a compiled plan and a rebuilt one cannot differ in how they were made.
Its fingerprint (TensorRT version, GPU name, compute capability) goes into the manifest; the
runtime refuses a plan whose fingerprint does not match.

TensorRT cannot be installed on the machines this project is developed on and they have no GPU, so
this module imports ``tensorrt`` only inside its functions and its tests skip with that reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmkd_edge.runtime.backends import backend_spec
from cmkd_edge.runtime.contract.manifest import Artifact

from cmkd_edge.errors import BackendUnavailableError, BundleError, ConfigError, ExportValidationError

COMPILE_PRECISIONS = ("fp16", "int8")  # the first is what `compile` builds by default


def available() -> tuple[bool, str]:
    """Whether an engine can be built here, and if not, why (the tests' skip reason)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return False, f"tensorrt does not import ({exc})"
    try:
        from cmkd_edge.runtime.backends.device import device_fingerprint

        device_fingerprint()
    except Exception as exc:  # no CUDA bindings, no driver, no GPU
        return False, f"no usable NVIDIA GPU ({str(exc).splitlines()[0] if str(exc) else exc!r})"
    return True, ""


def build_engine(onnx_path: Path, plan: Path, *, precision: str, input_shape: list[Any],
                 min_batch: int | None = None, opt_batch: int | None = None,
                 max_batch: int | None = None, timing_cache: Path | None = None,
                 strongly_typed: bool = False, workspace_mb: int | None = None) -> dict[str, Any]:
    """Build ``plan`` from ``onnx_path`` on this GPU with the runtime's builder; return its record.

    Args:
        input_shape: the manifest's ``[null, C, H, W]``; the batch axis gets the profile.
        min_batch, opt_batch, max_batch, timing_cache: None = the builder's defaults.
    Raises:
        BackendUnavailableError: tensorrt or a GPU is missing.
        ConfigError: bad batch profile.
        ExportValidationError: the parser or the builder failed (parser errors listed).
    """
    ok, why = available()
    if not ok:
        raise BackendUnavailableError(f"cannot build a TensorRT engine: {why}",
                                      f"build on the target device with {backend_spec('tensorrt').install_hint}")
    from cmkd_edge.runtime.backends import trt_build

    if precision not in COMPILE_PRECISIONS:
        raise ConfigError(f"TensorRT compile precision {precision!r}", f"choose {' or '.join(COMPILE_PRECISIONS)}")
    try:
        return trt_build.build_engine(
            onnx_path, plan, precision, shape=tuple(int(d) for d in input_shape[1:]),
            max_batch=max_batch, min_batch=min_batch, opt_batch=opt_batch,
            timing_cache=timing_cache, strongly_typed=strongly_typed,
            workspace_mb=workspace_mb or trt_build.DEFAULT_WORKSPACE_MB)
    except BundleError as exc:
        raise ExportValidationError(exc.message, exc.hint) from None


def compile_artifact(root: Path, src: Artifact, precision: str, *, input_shape: tuple[Any, ...],
                     min_batch: int | None = None, opt_batch: int | None = None,
                     max_batch: int | None = None, timing_cache: Path | None = None,
                     strongly_typed: bool = False, **_: Any) -> Artifact:
    """The TensorRT backend's compile hook: a plan of ``src`` with this GPU's fingerprint.

    Not gated: TensorRT runs only on the device, so ``gate_passed`` stays None here.
    """
    rel = f"tensorrt/model.{precision}.plan"
    (root / "tensorrt").mkdir(exist_ok=True)
    info = build_engine(root / src.path, root / rel, precision=precision,
                        input_shape=list(input_shape), min_batch=min_batch, opt_batch=opt_batch,
                        max_batch=max_batch, strongly_typed=strongly_typed,
                        timing_cache=timing_cache)
    return Artifact(id=f"tensorrt-{precision}", path=rel, format="tensorrt-plan",
                    precision=precision, backend="tensorrt", files=(rel,), source=src.id,
                    fingerprint=info["fingerprint"], max_batch=info["profile"]["max"],
                    gate_passed=None,
                    extra={"profile": info["profile"], "strongly_typed": strongly_typed})
