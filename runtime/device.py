"""What this device is: CPU model and the instruction-set flags that decide INT8 formats and speed.

Every latency report and benchmark records these (design.md, latency report contract). Stdlib only.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

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
