"""The one TensorRT engine builder, used by ``cmkd-edge compile`` and by the runtime's rebuild.

Why one: two builders had drifted apart (INT8 flags, optimization profile, default max batch, a
plan written non-atomically into a shared cache that the runtime then reused even if truncated).
It lives in the runtime because ``export/`` may import the runtime but not the reverse. Written
against the TensorRT 10 Python API; ``tensorrt`` is imported only inside :func:`build_engine`, so
the policy below (pure functions) is importable and tested without TensorRT or a GPU.

Policy:

* precision flags (:func:`builder_flags`): FP32 none; FP16 ``FP16``; INT8 comes from the ONNX
  file's explicit Q/DQ nodes (TensorRT's implicit calibrators are deprecated since 10.1), and a
  weakly typed network needs ``INT8`` to honour them, plus ``FP16`` so layers left in float may
  run in half. ``strongly_typed`` builds a ``STRONGLY_TYPED`` network instead, where the Q/DQ nodes
  and tensor types alone decide precision and no precision flag may be set.
* one optimization profile over the dynamic batch axis (:func:`batch_profile`): min 1, max
  :data:`DEFAULT_MAX_BATCH` (8, what an edge GPU holds comfortably for 64x64 patches), opt = max
  by default, because ``Classifier`` splits larger batches into chunks of exactly max_batch, so
  scenes and batched calls run at max; smaller batches are valid, only less tuned.
* the plan is written with ``fsutil.atomic_write_bytes``: a killed build leaves no truncated plan
  for a later run to pick up from a cache.
* timing cache (:func:`default_timing_cache`): per user, under the cmkd-edge cache root (not a
  shared /tmp file other users could replace), one file per device fingerprint (TensorRT version
  + compute capability), since a cache is only valid for the device and version that wrote it. A
  cache TensorRT rejects (other device, corrupt) is ignored and the build starts from an empty one,
  which then overwrites it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from cmkd_edge.errors import BundleError, ConfigError
from cmkd_edge.fsutil import atomic_write_bytes, cache_root

from .device import device_fingerprint
from .fingerprint import engine_key, fingerprint_key

log = logging.getLogger("cmkd_edge.runtime")

DEFAULT_MIN_BATCH = 1
DEFAULT_MAX_BATCH = 8
DEFAULT_WORKSPACE_MB = 1024
PRECISIONS = ("fp32", "fp16", "int8")


def builder_flags(precision: str, strongly_typed: bool = False) -> tuple[str, ...]:
    """Names of the ``trt.BuilderFlag`` members to set for ``precision``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown TensorRT precision {precision!r}", f"choose one of {PRECISIONS}")
    if strongly_typed:
        return ()
    return {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]


def batch_profile(min_batch: int | None = None, opt_batch: int | None = None,
                  max_batch: int | None = None) -> tuple[int, int, int]:
    """(min, opt, max) batch of the optimization profile, defaults filled in, checked."""
    mx = DEFAULT_MAX_BATCH if max_batch is None else int(max_batch)
    mn = DEFAULT_MIN_BATCH if min_batch is None else int(min_batch)
    opt = mx if opt_batch is None else int(opt_batch)
    if not 1 <= mn <= opt <= mx:
        raise ConfigError(f"TensorRT batch profile must satisfy 1 <= min <= opt <= max "
                          f"(got {mn}/{opt}/{mx})")
    return mn, opt, mx


def default_timing_cache(fingerprint: dict[str, Any],
                         cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache root>/tensorrt/timing-<trt>-<sm>.cache`` (``$CMKD_EDGE_CACHE`` or ~/.cache/cmkd-edge)."""
    return cache_root(cache_dir).parent / "tensorrt" / f"timing-{fingerprint_key(fingerprint)}.cache"


def default_engine_path(onnx_sha256: str, precision: str, fingerprint: dict[str, Any],
                        cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache root>/engines/<engine_key>.plan``: where the runtime keeps a plan it rebuilt on the device."""
    return cache_root(cache_dir).parent / "engines" / f"{engine_key(onnx_sha256, precision, fingerprint)}.plan"


def _timing_cache(trt: Any, config: Any, path: Path | None) -> Any:
    """Load ``path`` into ``config``; a cache TensorRT rejects is replaced by an empty one."""
    data = b""
    if path is not None and path.is_file():
        data = path.read_bytes()
    try:
        cache = config.create_timing_cache(data)
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return cache
    except Exception as exc:  # corrupt file: TensorRT raises instead of returning None/False
        log.debug("timing cache %s rejected: %s", path, exc)
    if data:
        log.warning("ignoring TensorRT timing cache %s (written for another device or version, or "
                    "damaged); it will be rewritten", path)
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def build_engine(onnx_path: str | os.PathLike[str], plan_path: str | os.PathLike[str],
                 precision: str, input_name: str | None = None,
                 shape: tuple[int, int, int] | None = None, max_batch: int | None = None, *,
                 min_batch: int | None = None, opt_batch: int | None = None,
                 timing_cache: str | os.PathLike[str] | None = None, strongly_typed: bool = False,
                 workspace_mb: int = DEFAULT_WORKSPACE_MB, device: int = 0,
                 cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Parse ``onnx_path``, build a serialized engine, write it atomically to ``plan_path``.

    Args:
        precision: fp32 | fp16 | int8 (int8: the ONNX must carry Q/DQ nodes).
        input_name: the network input the profile applies to (default: its first input).
        shape: (C, H, W) of the input; the batch axis gets the profile (default: the ONNX's).
        timing_cache: read before and written after the build; default
            :func:`default_timing_cache` for this device.
    Returns:
        The engine's record: fingerprint, profile, precision, strongly_typed, timing_cache.
    Raises:
        ConfigError: bad precision or batch profile.
        BundleError: the parser or the builder failed (parser errors listed).
    """
    import tensorrt as trt

    flags = builder_flags(precision, strongly_typed)
    mn, opt, mx = batch_profile(min_batch, opt_batch, max_batch)
    here = device_fingerprint(device)
    cache_path = Path(timing_cache) if timing_cache else default_timing_cache(here, cache_dir)
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(
        1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"TensorRT cannot parse {onnx_path.name}: {errs[:500]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    for flag in flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    inp = network.get_input(0) if input_name is None else next(
        (network.get_input(i) for i in range(network.num_inputs)
         if network.get_input(i).name == input_name), network.get_input(0))
    chw = tuple(int(d) for d in (shape if shape is not None else tuple(inp.shape)[1:]))
    if any(d < 1 for d in chw):
        raise BundleError(f"{onnx_path.name} has a dynamic non-batch dimension {chw}; pass shape")
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (mn, *chw), (opt, *chw), (mx, *chw))
    config.add_optimization_profile(profile)
    cache = _timing_cache(trt, config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BundleError(f"TensorRT failed to build an engine from {onnx_path.name}")
    atomic_write_bytes(plan_path, bytes(serialized))
    atomic_write_bytes(cache_path, bytes(cache.serialize()))
    return {"fingerprint": here, "profile": {"min": mn, "opt": opt, "max": mx},
            "precision": precision, "strongly_typed": strongly_typed,
            "builder_flags": list(flags), "timing_cache": str(cache_path)}
