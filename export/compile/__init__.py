"""Target-specific artifacts from the bundle's ONNX: the step that edits the bundle
(``targets.py``) and the re-run of the accuracy gate on a compiled INT8 model (``regate.py``); what
each target converts and checks is its backend's export module (``export/targets/<backend>.py``).

``from cmkd_edge.export.compile import compile_bundle`` imports only ``targets``.
"""

from __future__ import annotations

from cmkd_edge._lazy import lazy_exports

_LAZY = {"compile_bundle": ".targets"}

__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = sorted(_LAZY)
