"""OpenVINO INT8 through NNCF post-training quantization, and FP16-compressed IR.

NNCF quantizes the OpenVINO model read from the bundle's ONNX; the preprocessing ops (everything
between the input and the first convolution: band gather, log, clamp, normalisation) are put in
NNCF's ignored scope so raw reflectances are never squeezed into 8 bits. With validation data the
accuracy-aware variant (``quantize_with_accuracy_control``) reverts the most sensitive layers to
float until the drop is within ``max_drop``. ``import nncf`` pulls in torch and takes seconds, so it
happens only inside these functions (never on the CLI's or the runtime's import path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cmkd_edge.errors import QuantizationError

CONV_TYPES = ("Convolution", "GroupConvolution", "MatMul")


def preprocessing_ops(model: Any) -> list[str]:
    """Friendly names of the ops between the Parameter and the first convolution."""
    ops = model.get_ordered_ops()
    first = next((op for op in ops if op.get_type_name() in CONV_TYPES), None)
    if first is None:
        return []
    seen: dict[str, Any] = {}
    stack = [first.input_value(0).get_node()]
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in seen or node.get_type_name() in ("Parameter", "Constant"):
            continue
        seen[name] = node
        stack.extend(v.get_node() for v in node.input_values())
    return sorted(seen)


@contextlib.contextmanager
def _nncf_quiet() -> Iterator[None]:
    """Silence NNCF's own progress bar and INFO lines while it runs.

    Why: NNCF draws its bar on rich's global console, i.e. on stdout, so a piped ``quantize`` report
    got a second progress bar mixed into it; ``cmkd-edge quantize`` shows one bar of its own.
    """
    import logging

    import nncf
    import rich
    from nncf.common.logging import nncf_logger

    console = rich.get_console()
    quiet, level = console.quiet, nncf_logger.level
    console.quiet = True
    nncf.set_log_level(logging.WARNING)
    try:
        yield
    finally:
        console.quiet = quiet
        nncf.set_log_level(level)


def _dataset(x: np.ndarray, batch: int = 1) -> Any:
    import nncf

    items = [np.ascontiguousarray(x[i:i + batch]) for i in range(0, len(x), batch)]
    return nncf.Dataset(items)


def quantize_ptq(onnx_path: Path, calib_x: np.ndarray, ignored: list[str] | None = None) -> Any:
    """NNCF PTQ (performance preset, CPU) of the ONNX model read by OpenVINO; returns an ov.Model."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    keep = preprocessing_ops(model) + list(ignored or [])
    try:
        with _nncf_quiet():
            return nncf.quantize(model, _dataset(calib_x), subset_size=len(calib_x),
                                 target_device=nncf.TargetDevice.CPU,
                                 ignored_scope=nncf.IgnoredScope(names=keep, validate=False))
    except Exception as exc:
        raise QuantizationError(f"nncf.quantize failed: {str(exc).strip().splitlines()[0]}") from exc


def quantize_accuracy_control(onnx_path: Path, calib_x: np.ndarray, val_x: np.ndarray,
                              val_y: np.ndarray, max_drop_points: float,
                              accuracy: Callable[[np.ndarray, np.ndarray], float]) -> Any:
    """``nncf.quantize_with_accuracy_control`` with top-1 on the validation split as the metric."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    val_items = [(val_x[i:i + 1], val_y[i]) for i in range(len(val_x))]

    def validate(compiled: Any, data: Any) -> float:
        items = list(data)
        logits = np.concatenate([compiled(x)[0] for x, _ in items])
        return accuracy(logits, np.asarray([y for _, y in items]))

    try:
        with _nncf_quiet():
            return nncf.quantize_with_accuracy_control(
                model, _dataset(calib_x), nncf.Dataset(val_items, lambda item: item[0]), validate,
                max_drop=max_drop_points / 100.0, drop_type=nncf.DropType.ABSOLUTE,
                subset_size=len(calib_x), target_device=nncf.TargetDevice.CPU,
                ignored_scope=nncf.IgnoredScope(names=preprocessing_ops(model), validate=False))
    except Exception as exc:
        raise QuantizationError("nncf.quantize_with_accuracy_control failed: "
                                f"{str(exc).strip().splitlines()[0]}") from exc


def fp16_model(onnx_path: Path) -> Any:
    """The FP32 model read by OpenVINO; saved with ``compress_to_fp16`` it becomes FP16 weights."""
    import openvino as ov

    return ov.Core().read_model(str(onnx_path))


def save_ir(model: Any, xml: Path, fp16: bool = False) -> list[Path]:
    """Write ``model`` as IR (xml + bin); returns both paths."""
    import openvino as ov

    ov.save_model(model, str(xml), compress_to_fp16=fp16)
    return [xml, xml.with_suffix(".bin")]
