"""A throwaway backend, written by following docs/architecture.md "Adding a backend" (step 1).

``numpy-onnx`` evaluates an ONNX graph node by node with numpy: a real, tiny runner (no library
behind it to mock) for the ops a cmkd-edge student graph of the test factory holds - band selection
(Gather), Clip, Sub/Div normalisation, Conv, Relu, GlobalAveragePool, Flatten, Gemm - plus the
elementwise and linear ops of a linear model (Add, Mul, MatMul, Reshape, Softmax). A graph with any
other op is refused in one line when the runner opens. The file is read with ``onnx`` (its
``library``): numpy alone cannot parse protobuf.

Nothing outside this module and its one registration line names the backend
(``tests/runtime/test_add_backend.py`` checks that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from cmkd_edge.runtime.backends.base import Runner, TensorSpec
from cmkd_edge.runtime.backends.spec import BackendSpec

from cmkd_edge.errors import BundleError

Op = Callable[[list[Any], dict[str, Any]], np.ndarray]


def _conv(ins: list[Any], a: dict[str, Any]) -> np.ndarray:
    """2-D convolution, one group: windows of the padded input against every filter."""
    x, w = ins[0], ins[1]
    if a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
        raise BundleError("numpy-onnx runs Conv with group 1 and no dilation only")
    kh, kw = w.shape[2:]
    top, left, bottom, right = a.get("pads", [0, 0, 0, 0])
    sh, sw = a.get("strides", [1, 1])
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    out = np.einsum("nchwij,ocij->nohw", win, w, optimize=True)
    return out + ins[2][None, :, None, None] if len(ins) > 2 and ins[2] is not None else out


def _gemm(ins: list[Any], a: dict[str, Any]) -> np.ndarray:
    x = ins[0].T if a.get("transA", 0) else ins[0]
    w = ins[1].T if a.get("transB", 0) else ins[1]
    y = a.get("alpha", 1.0) * (x @ w)
    return y + a.get("beta", 1.0) * ins[2] if len(ins) > 2 and ins[2] is not None else y


def _clip(ins: list[Any], a: dict[str, Any]) -> np.ndarray:
    lo, hi = (ins + [None, None])[1:3]
    return np.clip(ins[0], -np.inf if lo is None else lo, np.inf if hi is None else hi)


def _softmax(ins: list[Any], a: dict[str, Any]) -> np.ndarray:
    z = ins[0] - ins[0].max(axis=a.get("axis", -1), keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=a.get("axis", -1), keepdims=True)


def _flatten(ins: list[Any], a: dict[str, Any]) -> np.ndarray:
    axis = a.get("axis", 1)
    return ins[0].reshape(int(np.prod(ins[0].shape[:axis])), -1)


OPS: dict[str, Op] = {
    "Gather": lambda ins, a: np.take(ins[0], ins[1], axis=a.get("axis", 0)),
    "Clip": _clip,
    "Add": lambda ins, a: ins[0] + ins[1],
    "Sub": lambda ins, a: ins[0] - ins[1],
    "Mul": lambda ins, a: ins[0] * ins[1],
    "Div": lambda ins, a: ins[0] / ins[1],
    "Relu": lambda ins, a: np.maximum(ins[0], 0),
    "Conv": _conv,
    "GlobalAveragePool": lambda ins, a: ins[0].mean(axis=(2, 3), keepdims=True),
    "Flatten": _flatten,
    "Reshape": lambda ins, a: ins[0].reshape([ins[0].shape[i] if d == 0 else d
                                              for i, d in enumerate(ins[1].tolist())]),
    "Gemm": _gemm,
    "MatMul": lambda ins, a: ins[0] @ ins[1],
    "Softmax": _softmax,
}


class NumpyRunner(Runner):
    """Evaluate an ONNX graph with numpy, node by node, in float32 as stored.

    ``from_memory`` takes the serialized model bytes. ``infer`` only reads shared state, so
    concurrent calls are safe.
    """

    name = "numpy-onnx"

    def _open(self) -> None:
        try:
            import onnx
            from onnx import helper, numpy_helper
        except ImportError as exc:
            raise BACKEND.unavailable(exc) from exc
        try:
            model = (onnx.load(str(self.path)) if self.model is None
                     else onnx.load_from_string(self.model))
        except Exception as exc:  # onnx raises protobuf's DecodeError and OSError
            raise BundleError(f"numpy-onnx cannot read {self.path.name} ({exc})".splitlines()[0]) from exc
        g = model.graph
        unknown = sorted({n.op_type for n in g.node} - set(OPS))
        if unknown:
            raise BundleError(f"numpy-onnx cannot run {self.path.name}: ops {', '.join(unknown)}",
                              f"it runs {', '.join(sorted(OPS))}")
        self._consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self._nodes = [(n.op_type, list(n.input), n.output[0],
                        {a.name: helper.get_attribute_value(a) for a in n.attribute}) for n in g.node]
        self._inputs = {}
        for i in g.input:
            if i.name in self._consts:
                continue
            t = i.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
            self._inputs[i.name] = TensorSpec(i.name, np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)),
                                              shape)
        self._outputs = [o.name for o in g.output]

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        env: dict[str, Any] = {**self._consts, **feeds}
        for op, ins, out, attrs in self._nodes:
            env[out] = np.asarray(OPS[op]([env[i] if i else None for i in ins], attrs))
        return {n: np.array(env[n], dtype=np.float32) for n in self._outputs}

    def describe(self) -> dict[str, Any]:
        return {"version": np.__version__, "nodes": len(self._nodes)}


BACKEND = BackendSpec(
    name="numpy-onnx", summary="ONNX graphs evaluated node by node with numpy (a test backend)",
    library="onnx", extra="train", needs_gpu=False, formats=("onnx",), native_format="onnx",
    auto_rank=40, runner=NumpyRunner)
