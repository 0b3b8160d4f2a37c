"""Quantization behind an accuracy gate: the fallback ladder (``ladder.py``), the quantizer base and
the table by backend (``rungs.py``; each backend's quantizer is in ``export/targets/``),
calibration and validation data (``calib.py``), the gate itself (``gate.py``), teacher-guided QAT
(``qat.py``) and the ONNX Runtime tool wrappers every ladder's QAT rung uses (``ort.py``).

``from cmkd_edge.export.quantize import quantize_bundle`` imports only the ladder.
"""

from __future__ import annotations

from cmkd_edge._lazy import lazy_exports

_LAZY = {"quantize_bundle": ".ladder", "quantizers": ".rungs"}

__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = sorted(_LAZY)
