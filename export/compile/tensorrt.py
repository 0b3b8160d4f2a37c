"""TensorRT engines from the bundle's ONNX, written against the TensorRT 10 Python API.

* FP16: the FP32 ONNX with ``BuilderFlag.FP16`` (a weakly typed network: TensorRT picks per layer).
* INT8: the explicit QDQ ONNX (the one INT8 artifact; TensorRT's implicit calibrators are deprecated
  since 10.1) with ``BuilderFlag.INT8`` + ``FP16`` so the layers left in float may run in half.
  ``strongly_typed=True`` instead builds a ``STRONGLY_TYPED`` network, where the Q/DQ nodes and
  tensor types alone decide precision and no precision flag may be set.
* Networks are explicit-batch (the only mode in TensorRT 10), with one optimization profile
  (min/opt/max batch) over the dynamic batch axis; a timing cache file speeds up rebuilds.
* The engine is a plain serialized plan. Its fingerprint (TensorRT version, GPU name, compute
  capability) goes into the manifest; the runtime refuses a plan whose fingerprint does not match.

TensorRT cannot be installed on the machines this project is developed on and they have no GPU, so
this module imports ``tensorrt`` only inside its functions and its tests skip with that reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmkd_edge.errors import BackendUnavailableError, ExportValidationError

PRECISIONS = ("fp16", "int8")


def available() -> tuple[bool, str]:
    """Whether an engine can be built here, and if not, why (the tests' skip reason)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return False, f"tensorrt does not import ({exc})"
    try:
        from cmkd_edge.runtime.fingerprint import device_fingerprint

        device_fingerprint()
    except Exception as exc:  # no CUDA bindings, no driver, no GPU
        return False, f"no usable NVIDIA GPU ({str(exc).splitlines()[0] if str(exc) else exc!r})"
    return True, ""


def build_engine(onnx_path: Path, plan: Path, *, precision: str, input_shape: list[Any],
                 min_batch: int = 1, opt_batch: int = 1, max_batch: int = 8,
                 timing_cache: Path | None = None, strongly_typed: bool = False,
                 workspace_mb: int = 1024) -> dict[str, Any]:
    """Parse ``onnx_path``, build a serialized engine, write it to ``plan``; return its record.

    Args:
        input_shape: the manifest's ``[null, C, H, W]``; the batch axis gets the profile.
        timing_cache: file read before and written after the build (created when absent).
    Raises:
        BackendUnavailableError: tensorrt or a GPU is missing.
        ExportValidationError: the parser or the builder failed (parser errors listed).
    """
    ok, why = available()
    if not ok:
        raise BackendUnavailableError(f"cannot build a TensorRT engine: {why}",
                                      "build on the target device with pip install 'cmkd-edge[tensorrt]'")
    import tensorrt as trt
    from cmkd_edge.runtime.fingerprint import device_fingerprint

    from cmkd_edge.fsutil import atomic_write_bytes

    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ExportValidationError(f"batch profile must satisfy 1 <= min <= opt <= max "
                                    f"(got {min_batch}/{opt_batch}/{max_batch})")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportValidationError(f"TensorRT could not parse {onnx_path.name}: "
                                    + "; ".join(errors[:5]))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # honours the Q/DQ scales in the graph
    profile = builder.create_optimization_profile()
    inp = network.get_input(0)
    chw = tuple(int(d) for d in input_shape[1:])
    profile.set_shape(inp.name, (min_batch, *chw), (opt_batch, *chw), (max_batch, *chw))
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportValidationError(f"TensorRT failed to build an engine from {onnx_path.name}")
    atomic_write_bytes(plan, bytes(serialized))
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(cache.serialize()))
    return {"fingerprint": device_fingerprint(),
            "profile": {"min": min_batch, "opt": opt_batch, "max": max_batch},
            "strongly_typed": strongly_typed, "precision": precision}
