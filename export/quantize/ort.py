"""ONNX Runtime INT8 (explicit QDQ) and FP16 artifacts.

INT8 is one QDQ ONNX file (QuantizeLinear/DequantizeLinear around each quantized op), the format
ONNX Runtime, OpenVINO and TensorRT all accept (field notes: TensorRT's implicit calibrators are
deprecated). Activation/weight types follow the target device (``--for``; the rule is
``runtime/device_profiles.int8_format``). Per-channel weights. Preprocessing nodes stay in float (``nodes_to_exclude``).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmkd_edge.errors import QuantizationError


def choose_int8_types(target: Any = None) -> dict[str, Any]:
    """Activation/weight types for the target device, with the profile and the reason (recorded).

    ``target``: a :class:`~cmkd_edge.runtime.device_profiles.DeviceProfile` (default: this machine);
    the rule itself lives in ``device_profiles.int8_format``.
    """
    from cmkd_edge.runtime.device_profiles import host_profile, int8_format

    return int8_format(target if target is not None else host_profile())


class _Reader:
    """onnxruntime CalibrationDataReader over raw batches (duck-typed: get_next/rewind)."""

    def __init__(self, x: np.ndarray, input_name: str, batch: int = 8) -> None:
        from cmkd_edge.export.quantize.calib import batches

        self._batches = list(batches(x, batch))
        self._name = input_name
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._batches):
            return None
        self._i += 1
        return {self._name: self._batches[self._i - 1]}

    def rewind(self) -> None:
        self._i = 0


def even_batch(n: int, cap: int = 8) -> int:
    """The largest batch size <= ``cap`` that divides ``n`` (every calibration batch equal)."""
    return next(b for b in range(min(cap, max(n, 1)), 0, -1) if n % b == 0 or n == 0)


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """Silence onnxruntime.quantization's prints and root-logger advice during one call.

    why: it prints histogram progress to stdout and logs a pre-processing hint on the *root* logger
    for every call, which drowns the gate's own report (and ``--json`` output) in noise.
    """
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def quantize_int8(fp32: Path, out: Path, calib_x: np.ndarray, method: str,
                  types: dict[str, Any], exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Write a QDQ INT8 model of ``fp32`` to ``out`` calibrated on ``calib_x`` (raw inputs).

    Raises:
        QuantizationError: onnxruntime's quantizer failed.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    model = onnx.load(str(fp32))
    # why equal batches: the histogram calibrators (entropy, percentile) stack every batch's
    # activations into one array, so a shorter last batch made them fail with "inhomogeneous shape"
    batch = even_batch(len(calib_x)) if method in ("entropy", "percentile") else 8
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(calib_x, model.graph.input[0].name,
                                                                  batch)
    extra = {"ActivationSymmetric": types["activation"] == "QInt8", "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = 99.99
    try:
        with _quiet_ort():
            quantize_static(
                str(fp32), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                reduce_range=bool(types["reduce_range"]),
                activation_type=getattr(QuantType, types["activation"]),
                weight_type=getattr(QuantType, types["weight"]),
                nodes_to_exclude=list(exclude), calibrate_method=methods[method], extra_options=extra)
    except Exception as exc:
        raise QuantizationError(f"onnxruntime quantize_static ({method}) failed: "
                                f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0]}") from exc
    return {"format": "QDQ", "per_channel": True, "calib_method": method,
            "excluded_nodes": list(exclude)}


#: ONNX Runtime graph transformers an artifact with a float stem must run without (recorded in the
#: artifact, applied by the ONNX Runtime runner): QDQ propagation moves the QuantizeLinear that
#: follows the float stem's max-pool above it, and the pool then runs on uint8 in NCHW, ONNX
#: Runtime's generic pooling loop (544 us where the float NCHWc pool takes 10 us, aconv, 1 thread).
FLOAT_STEM_DISABLED_OPTIMIZERS = ("QDQPropagationTransformer",)
#: The ops after a stem convolution that stay float with it (up to the next quantized layer).
_STEM_TAIL = ("Relu", "Clip", "MaxPool", "BatchNormalization", "LeakyRelu")


def float_stem_nodes(model: Any) -> list[str]:
    """Nodes ONNX Runtime runs faster in float than in INT8: a dense convolution over a single input
    channel, and the activation/pooling chain after it.

    Why: ``QLinearConv`` lowers a convolution to an 8-bit GEMM whose reduction depth is
    ``C_in x kh x kw``; with one input channel that is 25 for a 5x5 stem, far too short for the
    VNNI/SDOT kernels, and the uint8 im2col dominates. Measured on the radar student (aconv,
    88x88, one thread, AVX-512 VNNI): the INT8 stem took 470 us against 89 us in float, half of
    the whole INT8 model's time (docs/benchmarks.md, "INT8 speed on the radar student").
    """
    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    out: list[str] = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if group != 1 or inits[node.input[1]].dims[1] != 1:
            continue
        out.append(node.name)
        cur = node
        while len(nxt := consumers.get(cur.output[0], [])) == 1 and nxt[0].op_type in _STEM_TAIL:
            cur = nxt[0]
            out.append(cur.name)
    return out


def convert_fp16(fp32: Path, out: Path, keep_float: Sequence[str]) -> dict[str, Any]:
    """FP16 weights and activations, float32 I/O and preprocessing (ONNX-level conversion).

    Uses the float16 converter that ships inside onnxruntime (``onnxruntime.transformers.float16``,
    the onnxconverter-common code) with ``keep_io_types`` and the preprocessing nodes blocked: raw
    reflectances up to 2e4 and linear SAR power near 1e-10 do not survive a cast to float16 before
    normalisation. Useful for GPU execution providers; ONNX Runtime's x86 CPU provider has few FP16
    kernels and inserts casts, so it is not faster there (measured in benchmarks/quantize.py).
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32))
    try:
        half = convert_float_to_float16(model, keep_io_types=True, node_block_list=list(keep_float))
    except Exception as exc:
        raise QuantizationError(f"float16 conversion failed: {str(exc).splitlines()[0]}") from exc
    onnx.save(half, str(out))
    return {"format": "fp16", "kept_float": list(keep_float)}


def op_outputs(model: Any, ops: Sequence[str] = ("Conv", "Gemm", "MatMul")) -> list[tuple[str, str, str]]:
    """(node name, main input, output) of every weighted op, in graph order."""
    return [(n.name, n.input[0], n.output[0]) for n in model.graph.node if n.op_type in ops]


def sensitive_nodes(fp32: Path, qdq: Path, x: np.ndarray, k: int) -> list[dict[str, Any]]:
    """Rank weighted ops by the quantization error they *add* and return the top ``k``.

    For each Conv/Gemm, the noise-to-signal ratio (||q - f||^2 / ||f||^2) of its output in the QDQ
    model against FP32 is measured on calibration inputs, minus the ratio already present at its
    input: error that is only inherited from earlier layers is not blamed on this one.

    Both models run in memory on the runtime's ONNX Runtime runner, one thread, with graph
    optimisation off so every tapped tensor is the one the graph names (no fusion).
    """
    import onnx
    from cmkd_edge.runtime.backends.onnxruntime import OrtRunner

    model = onnx.load(str(fp32))
    ops = op_outputs(model)
    tensors = sorted({t for _, i, o in ops for t in (i, o)})

    def run(path: Path) -> dict[str, np.ndarray]:
        m = onnx.load(str(path))
        have = {o.name for o in m.graph.output}
        produced = {o for n in m.graph.node for o in n.output}
        for t in tensors:
            if t not in have and t in produced:
                m.graph.output.append(onnx.ValueInfoProto(name=t))
        with OrtRunner.from_memory(m.SerializeToString(), threads=1, optimize=False,
                                   label=path.name) as runner:
            got = runner.infer({next(iter(runner.input_specs())): x})
        return {t: got[t] for t in tensors if t in got}

    try:
        ref, q = run(fp32), run(qdq)
    except Exception as exc:
        raise QuantizationError(f"layer sensitivity analysis failed: {str(exc).splitlines()[0]}"
                                ) from exc

    def nsr(t: str) -> float:
        if t not in ref or t not in q:
            return 0.0
        f = ref[t].astype(np.float64)
        return float(((q[t] - f) ** 2).sum() / max((f ** 2).sum(), 1e-12))

    ranked = [{"node": name, "added_nsr": nsr(o) - nsr(i), "output_nsr": nsr(o)}
              for name, i, o in ops]
    ranked.sort(key=lambda r: -r["added_nsr"])
    return ranked[:k]
