"""What this device is: CPU model and ISA flags (INT8 formats, speed), and the NVIDIA GPU probes.

Every latency report and benchmark records the CPU part (design.md, latency report contract).
Stdlib only at import; the GPU probes import tensorrt / cuda-python inside the call.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import Any

# Flags that change what quantized kernels can do, grouped by the name users know them by.
_FLAG_GROUPS: dict[str, tuple[str, ...]] = {
    "avx2": ("avx2",),
    "fma": ("fma",),
    "avx512": ("avx512f",),
    "avx512_vnni": ("avx512_vnni", "avx512vnni"),
    "avx_vnni": ("avx_vnni", "avxvnni"),
    "amx": ("amx_tile", "amx_int8", "amx_bf16"),
    "neon": ("neon", "asimd"),
    "asimddp": ("asimddp",),
    "f16c": ("f16c",),
}


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and value.strip():
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, frozenset(flags)


def cpu_flags() -> dict[str, bool]:
    """Map each ISA feature that matters for inference (avx2, avx512, vnni, amx, neon, ...) to presence."""
    _, flags = _cpuinfo()
    return {name: any(f in flags for f in aliases) for name, aliases in _FLAG_GROUPS.items()}


def has_vnni() -> bool:
    """True when the CPU has an 8-bit dot-product instruction (AVX-VNNI, AVX512-VNNI or AMX)."""
    f = cpu_flags()
    return f["avx512_vnni"] or f["avx_vnni"] or f["amx"]


def cpu_info() -> dict[str, object]:
    """CPU model, architecture, logical core count and ISA flags, for reports."""
    model, _ = _cpuinfo()
    return {
        "model": model,
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "flags": cpu_flags(),
        "flags_present": sorted(k for k, v in cpu_flags().items() if v),
    }


def gpu_name() -> str | None:
    """Name of the first NVIDIA GPU from the driver's /proc entry (no CUDA import), or None."""
    import glob

    for info in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        try:
            with open(info, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.lower().startswith("model:"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            continue
    return None


def device_info() -> dict[str, object]:
    """CPU info plus the GPU name (None without an NVIDIA GPU): the ``device`` of latency reports."""
    return {"cpu": cpu_info(), "gpu": gpu_name()}


def package_versions(dists: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``dists`` (distribution names); missing optional ones are skipped.

    One look-up for every record that names its tools (bundle provenance, latency reports).
    """
    from importlib import metadata

    out = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


# -- NVIDIA GPU / TensorRT probes ---------------------------------------------------------------
# The one home of every TensorRT device probe: the backend registry (availability), the runner,
# the engine builder and the fingerprint check all import these, so none reaches into another's
# private helpers. ``tensorrt`` and the CUDA bindings are imported only inside the functions.


@lru_cache(maxsize=1)
def has_nvidia_gpu() -> bool:
    """Cheap probe for an NVIDIA GPU (device node or nvidia-smi), without importing CUDA."""
    import shutil

    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvhost-ctrl-gpu") or bool(
        shutil.which("nvidia-smi") and os.path.exists("/proc/driver/nvidia/version"))


def cuda_runtime() -> Any:
    """NVIDIA's cuda-python runtime bindings (``cudart``); ImportError when not installed."""
    try:  # cuda-python >= 12.6 moved the bindings
        from cuda.bindings import runtime as cudart
    except ImportError:  # pragma: no cover - older cuda-python
        from cuda import cudart  # type: ignore[no-redef]
    return cudart


def cuda_check(result: Any) -> Any:
    """Unpack a cuda-python ``(err, *values)`` tuple, raising on a CUDA error."""
    from cmkd_edge.errors import BackendUnavailableError

    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendUnavailableError(f"CUDA call failed: {cuda_runtime().cudaGetErrorString(err)[1]!r}")
    return values[0] if len(values) == 1 else values


def device_fingerprint(device: int = 0) -> dict[str, str]:
    """This GPU's TensorRT fingerprint: TensorRT version, GPU name, compute capability.

    Imports tensorrt and the CUDA bindings (GPU machines only; ImportError elsewhere).
    """
    import tensorrt as trt

    props = cuda_check(cuda_runtime().cudaGetDeviceProperties(device))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"tensorrt": trt.__version__, "gpu": name.strip("\x00 "),
            "compute_capability": f"{props.major}.{props.minor}"}
