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
    "asimddp": ("asimddp",),  # ARMv8.2 dot product (SDOT/UDOT): ORT's fast INT8 kernels
    "asimdhp": ("asimdhp",),  # ARMv8.2 half-precision arithmetic (FP16 runs natively)
    "i8mm": ("i8mm", "svei8mm"),  # ARMv8.6 int8 matrix multiply (SMMLA)
    "sve": ("sve",),
    "bf16": ("bf16", "svebf16"),
    "f16c": ("f16c",),
}

#: Arm Ltd. (implementer 0x41) CPU part numbers of cores found on edge boards: /proc/cpuinfo on
#: aarch64 names no model, only the part (Linux arch/arm64/include/asm/cputype.h).
_ARM_PARTS: dict[int, str] = {
    0xD03: "Cortex-A53", 0xD04: "Cortex-A35", 0xD05: "Cortex-A55", 0xD07: "Cortex-A57",
    0xD08: "Cortex-A72", 0xD09: "Cortex-A73", 0xD0A: "Cortex-A75", 0xD0B: "Cortex-A76",
    0xD0C: "Neoverse-N1", 0xD0D: "Cortex-A77", 0xD40: "Neoverse-V1", 0xD41: "Cortex-A78",
    0xD42: "Cortex-A78AE", 0xD44: "Cortex-X1", 0xD46: "Cortex-A510", 0xD47: "Cortex-A710",
    0xD48: "Cortex-X2", 0xD49: "Neoverse-N2", 0xD4B: "Cortex-A78C", 0xD4F: "Neoverse-V2",
    0xD80: "Cortex-A520", 0xD81: "Cortex-A720", 0xD82: "Cortex-X4",
}
_NVIDIA_PARTS: dict[int, str] = {0x004: "Carmel"}  # implementer 0x4e (Jetson Xavier)


def parse_cpuinfo(text: str, board: str | None = None) -> tuple[str, frozenset[str]]:
    """CPU model and flags from /proc/cpuinfo text (x86 or ARM) and the board's device-tree model.

    On ARM the kernel prints no model name ("Hardware: BCM2835" on a Pi 4 is the SoC family, not the
    board): the model is the board (device tree) and the core named from its part number, e.g.
    "Raspberry Pi 4 Model B Rev 1.4 (Cortex-A72)", so latency reports and caches key on the real part.
    """
    model, hardware, flags, parts = "", "", set(), []
    implementer = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "cpu model") and value and not model:
            model = value
        elif key == "hardware" and value:
            hardware = value
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key == "cpu implementer":
            implementer = value
        elif key == "cpu part":
            try:
                part = int(value, 16)
            except ValueError:
                continue
            table = _NVIDIA_PARTS if implementer and implementer.lower() == "0x4e" else _ARM_PARTS
            name = table.get(part, f"part {value}")
            if name not in parts:
                parts.append(name)
    if not model:
        core = " + ".join(parts)
        base = board or hardware
        model = f"{base} ({core})" if base and core else base or core
    return model, frozenset(flags)


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    board = None
    try:
        with open("/proc/device-tree/model", encoding="utf-8", errors="replace") as fh:
            board = fh.read().strip("\x00 \n") or None
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            model, flags = parse_cpuinfo(fh.read(), board)
    except OSError:
        model, flags = board or "", frozenset()
    return model or platform.processor() or platform.machine(), flags


def flag_groups(flags: frozenset[str] | set[str]) -> dict[str, bool]:
    """Map each ISA feature that matters for inference to its presence in raw cpuinfo ``flags``."""
    return {name: any(f in flags for f in aliases) for name, aliases in _FLAG_GROUPS.items()}


def cpu_flags() -> dict[str, bool]:
    """Map each ISA feature that matters for inference (avx2, avx512, vnni, amx, neon, ...) to presence."""
    return flag_groups(_cpuinfo()[1])


def has_vnni() -> bool:
    """True when the CPU has an 8-bit dot-product instruction (AVX-VNNI, AVX512-VNNI or AMX)."""
    f = cpu_flags()
    return f["avx512_vnni"] or f["avx_vnni"] or f["amx"]


def machine() -> str:
    """The architecture under its Linux name (``x86_64``, ``aarch64``), whatever the platform calls it."""
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


def cpu_info() -> dict[str, object]:
    """CPU model, architecture, logical core count and ISA flags, for reports."""
    model, _ = _cpuinfo()
    return {
        "model": model,
        "machine": machine(),
        "logical_cores": os.cpu_count(),
        "flags": cpu_flags(),
        "flags_present": sorted(k for k, v in cpu_flags().items() if v),
    }


def memory_mb() -> int | None:
    """Total memory in MiB (/proc/meminfo), None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


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
