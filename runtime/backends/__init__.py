"""Runtime backends, registered by lazy import path so listing them imports no backend library.

``BACKENDS.get(name)`` imports the runner class; a backend whose library is missing becomes a
:class:`~cmkd_edge.errors.BackendUnavailableError`. ``available(name)`` answers "could this device
run it?" without importing the library (``importlib.util.find_spec``), plus a GPU probe for TensorRT.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from functools import cache

from cmkd_edge._registry import Registry

BACKENDS: Registry = Registry("backend")
BACKENDS.add("onnxruntime", "cmkd_edge.runtime.backends.onnxruntime:OrtRunner",
             "ONNX Runtime, CPU execution provider (base install)")
BACKENDS.add("openvino", "cmkd_edge.runtime.backends.openvino:OpenVinoRunner",
             "OpenVINO runtime: ONNX or IR on CPU/GPU/NPU (extra: openvino)")
BACKENDS.add("tensorrt", "cmkd_edge.runtime.backends.tensorrt:TrtRunner",
             "TensorRT 10 engines on an NVIDIA GPU (extra: tensorrt)")

# Which artifact formats each backend can load.
FORMATS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnx",),
    "openvino": ("onnx", "openvino-ir"),
    "tensorrt": ("tensorrt-plan", "onnx"),
}
# Preference order of backend="auto" (fastest first where present).
AUTO_ORDER = ("tensorrt", "openvino", "onnxruntime")
_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}


@cache
def has_nvidia_gpu() -> bool:
    """Cheap probe for an NVIDIA GPU (device node or nvidia-smi), without importing CUDA."""
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvhost-ctrl-gpu") or bool(
        shutil.which("nvidia-smi") and os.path.exists("/proc/driver/nvidia/version"))


def available(name: str) -> bool:
    """True when backend ``name`` is installed (and, for TensorRT, a GPU is present)."""
    try:
        found = importlib.util.find_spec(_MODULES[name]) is not None
    except (KeyError, ValueError, ImportError):
        return False
    return found and (name != "tensorrt" or has_nvidia_gpu())


def available_backends() -> list[str]:
    """Installed backends, in ``auto`` preference order."""
    return [b for b in AUTO_ORDER if available(b)]
