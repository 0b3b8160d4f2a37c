"""Quantization behind an accuracy gate: the fallback ladder (``ladder.py``), what each backend's
rungs build (``rungs.py``), calibration and validation data (``calib.py``), the gate itself
(``gate.py``), and the ONNX Runtime / NNCF tool wrappers (``ort.py``, ``openvino.py``).

``from cmkd_edge.export.quantize import quantize_bundle`` imports only the ladder.
"""

from __future__ import annotations

from cmkd_edge._lazy import lazy_exports

_LAZY = {"quantize_bundle": ".ladder", "quantizers": ".rungs"}

__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = sorted(_LAZY)
