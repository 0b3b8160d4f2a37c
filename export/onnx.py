"""Torch -> ONNX for a student with its deploy preprocessing baked into the graph.

Exporter choice (field notes): torch 2.13's default exporter (``dynamo=True``, torch.export +
onnxscript) is the maintained path, but its lowest implemented opset is 18 and it silently writes
18 when asked for less. The legacy TorchScript exporter (``dynamo=False``) honours any opset exactly
but is deprecated. ``exporter="auto"`` therefore uses dynamo for opset >= 18 (the default, 18) and
the legacy exporter only when an older opset is asked for (e.g. an older TensorRT on a Jetson).
Whatever ran, the *written* opset and IR version are read back from the file, compared with what
was asked and with the maxima the installed onnxruntime accepts, and loaded once by each installed
runtime; all of it is recorded in the manifest.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from cmkd_edge.runtime.contract.specs import (
    DB_FLOOR,
    CentreCrop,
    CentreMean,
    Clip,
    LogScale,
    Normalise,
    PreprocessOp,
    PreprocessSpec,
    Select,
)

from cmkd_edge.errors import ExportValidationError

DYNAMO_MIN_OPSET = 18
DEFAULT_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "logits"


def build_deploy_module(net: Any, spec: PreprocessSpec) -> Any:
    """Wrap ``net`` so it takes raw source bands: the spec's op chain (``spec.graph_ops``: select ->
    centre crop -> dB | log1p -> clip -> per-sample centring), each op rendered by :func:`torch_op`,
    then ``net``.

    The chain is the one ``PreprocessSpec.apply`` (the numpy reference the graph is tested against)
    renders. ``net`` normalises with its own InputNorm and clips when it was built with a clip
    (``PreprocessSpec.clip_in_net``), so the wrapper leaves that clip out: one clip per graph.
    """
    import torch

    net_clips = bool(getattr(net.norm, "has_clip", False))
    if spec.centre and net_clips:
        raise ExportValidationError("a centred preprocessing spec needs a network built without its "
                                    "own clip (PreprocessSpec.clip_in_net)")

    class DeployModel(torch.nn.Module):
        """Raw (N, len(source_bands), H, W) sensor values -> logits (N, K)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.steps = torch.nn.ModuleList(torch_op(op) for op in spec.graph_ops(net_clips))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for step in self.steps:
                x = step(x)
            return self.net(x)

    return DeployModel().eval()


def torch_op(op: PreprocessOp) -> Any:
    """The torch rendering of one preprocessing op (a module traced into the ONNX graph); the numpy
    rendering is ``op.numpy``, and ``tests/export/test_preprocess_ops.py`` holds the two equal."""
    return _torch_renderings()[type(op)](op)


@lru_cache(maxsize=1)
def _torch_renderings() -> dict[type, Any]:
    """op type -> torch module class (built once: torch is imported only when export runs)."""
    import torch
    from torch import nn

    class SelectOp(nn.Module):
        def __init__(self, op: Select) -> None:
            super().__init__()
            self.register_buffer("index", torch.tensor(list(op.indices), dtype=torch.int64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.index_select(x, 1, self.index)

    class CentreCropOp(nn.Module):
        def __init__(self, op: CentreCrop) -> None:
            super().__init__()
            self.op = op

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # python ints from the (static) input shape: the exporter records constant slices
            top, left = self.op.offsets((int(x.shape[-2]), int(x.shape[-1])))
            return x[:, :, top:top + self.op.size[0], left:left + self.op.size[1]]

    class LogScaleOp(nn.Module):
        def __init__(self, op: LogScale) -> None:
            super().__init__()
            self.db, self.factor = op.kind == "db", float(op.factor)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.db:
                return self.factor * torch.log10(torch.clamp(x, min=DB_FLOOR))
            return torch.log1p(torch.clamp(x, min=0.0))

    class ClipOp(nn.Module):
        def __init__(self, op: Clip) -> None:
            super().__init__()
            self.lo, self.hi = float(op.lo), float(op.hi)  # plain floats: constant clamp bounds

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.clamp(x, self.lo, self.hi)

    class CentreMeanOp(nn.Module):
        def __init__(self, op: CentreMean) -> None:
            super().__init__()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x - x.mean(dim=(-2, -1), keepdim=True)

    class NormaliseOp(nn.Module):
        """What the network's InputNorm computes (the deploy wrapper leaves it to the network)."""

        def __init__(self, op: Normalise) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(op.mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("inv_std", torch.from_numpy(op.inv_std()).view(1, -1, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x - self.mean) * self.inv_std

    return {Select: SelectOp, CentreCrop: CentreCropOp, LogScale: LogScaleOp, Clip: ClipOp,
            CentreMean: CentreMeanOp, Normalise: NormaliseOp}


def export_onnx(module: Any, example: Any, path: Path, opset: int = DEFAULT_OPSET,
                exporter: str = "auto") -> dict[str, Any]:
    """Export ``module`` to ``path`` with a dynamic batch axis; return what was asked and used.

    Raises:
        ExportValidationError: the exporter failed, or wrote a different opset than asked.
    """
    import torch

    if exporter == "auto":
        exporter = "dynamo" if opset >= DYNAMO_MIN_OPSET else "legacy"
    if exporter == "dynamo" and opset < DYNAMO_MIN_OPSET:
        raise ExportValidationError(f"the dynamo exporter writes opset >= {DYNAMO_MIN_OPSET} "
                                    f"(asked {opset})", "use --exporter legacy for an older opset")
    kwargs: dict[str, Any] = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME],
                              "opset_version": opset}
    if exporter == "dynamo":
        kwargs.update(dynamo=True, external_data=False, verbose=False,
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    else:
        kwargs.update(dynamo=False, dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    # why: both exporters print progress and deprecation chatter that is not actionable here
    names = ("torch.onnx", "torch.fx", "torch.export", "torch._export", "torch._dynamo")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            with torch.no_grad():
                torch.onnx.export(module, (example,), str(path), **kwargs)
    except Exception as exc:  # the exporters raise many unrelated types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportValidationError(f"torch.onnx.export ({exporter}) failed: {first}") from exc
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    return {"exporter": exporter, "opset_requested": opset, "torch": torch.__version__}


def slim(path: Path) -> dict[str, Any]:
    """Fold constants and remove dead nodes with onnxslim, in place; keep the original on failure."""
    import onnx
    import onnxslim

    before = onnx.load(str(path))
    try:
        slimmed = onnxslim.slim(before)
    except Exception as exc:  # onnxslim is an optimiser: a failure must not fail the export
        return {"onnxslim": onnxslim.__version__, "applied": False, "error": str(exc)[:200]}
    onnx.save(slimmed, str(path))
    return {"onnxslim": onnxslim.__version__, "applied": True,
            "nodes_before": len(before.graph.node), "nodes_after": len(slimmed.graph.node)}


def _tiny_model(opset: int, ir_version: int) -> bytes:
    import onnx.helper as h

    node = h.make_node("Relu", ["x"], ["y"])
    graph = h.make_graph([node], "probe", [h.make_tensor_value_info("x", 1, [1])],
                         [h.make_tensor_value_info("y", 1, [1])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model.SerializeToString()


@lru_cache(maxsize=1)
def onnxruntime_maxima() -> dict[str, Any]:
    """Highest opset and IR version the installed onnxruntime loads, found by loading tiny models.

    Why probe: onnxruntime publishes these only in its docs table; loading a one-node model per
    candidate (about 1 ms each) gives the installed build's real limits.
    """
    import onnx
    import onnxruntime as ort
    from cmkd_edge.runtime.backends.onnxruntime import OrtRunner

    def loads(opset: int, ir: int) -> bool:
        try:
            OrtRunner.from_memory(_tiny_model(opset, ir), label="probe.onnx").open().close()
            return True
        except Exception:
            return False

    max_opset = max((o for o in range(7, onnx.defs.onnx_opset_version() + 1) if loads(o, 7)),
                    default=0)
    max_ir = max((v for v in range(3, onnx.IR_VERSION + 1) if loads(min(max_opset, 13), v)),
                 default=0)
    return {"version": ort.__version__, "max_opset": max_opset, "max_ir_version": max_ir}


def check_onnx(path: Path, opset_requested: int) -> dict[str, Any]:
    """ONNX checker + written opset/IR versus the request and the installed runtimes' limits.

    Returns the record stored under ``provenance.onnx`` (written versions, runtime maxima, which
    runtimes loaded the file). Collects every problem, then raises once.

    Raises:
        ExportValidationError: checker failure, opset differs from the request, opset/IR above the
            installed onnxruntime's maxima, or a runtime cannot load the model.
    """
    import onnx

    problems: list[str] = []
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        problems.append(f"onnx checker: {str(exc).strip().splitlines()[0]}")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    ir = int(model.ir_version)
    if opset != opset_requested:
        problems.append(f"written opset {opset} differs from the requested {opset_requested}")
    ort_max = onnxruntime_maxima()
    if opset > ort_max["max_opset"] or ir > ort_max["max_ir_version"]:
        problems.append(f"opset {opset}/IR {ir} exceed onnxruntime {ort_max['version']}'s "
                        f"maxima {ort_max['max_opset']}/{ort_max['max_ir_version']}")
    loads = {"onnxruntime": _loads_in_ort(path, problems), "openvino": _loads_in_openvino(path, problems)}
    if problems:
        raise ExportValidationError(f"{path.name} failed {len(problems)} check(s): " + "; ".join(problems))
    return {"opset": opset, "ir_version": ir, "onnx": onnx.__version__,
            "onnxruntime_maxima": ort_max, "loads": loads}


def _loads_in_ort(path: Path, problems: list[str]) -> bool:
    """Open the file with the runtime's ONNX Runtime runner, as a device will."""
    from cmkd_edge.runtime.backends.onnxruntime import OrtRunner

    try:
        OrtRunner(path).open().close()
        return True
    except Exception as exc:
        cause = exc.__cause__ or exc  # the runner wraps ORT's error: report ORT's own words
        problems.append(f"onnxruntime cannot load it: {str(cause).strip().splitlines()[0][:200]}")
        return False


def _loads_in_openvino(path: Path, problems: list[str]) -> bool | None:
    """OpenVINO reads ONNX op by op (no declared maximum opset): reading the file is the check."""
    try:
        import openvino as ov
    except ImportError:
        return None  # optional extra
    try:
        ov.Core().read_model(str(path))
        return True
    except Exception as exc:
        problems.append(f"openvino cannot read it: {str(exc).strip().splitlines()[0][:200]}")
        return False


def preprocessing_nodes(model: Any) -> list[str]:
    """Names of the nodes between the graph input and the first Conv/Gemm/MatMul (preprocessing
    and normalisation): quantization keeps them in float."""
    first = next((n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")), None)
    if first is None:
        return []
    producer = {o: n for n in model.graph.node for o in n.output}
    seen: dict[str, Any] = {}
    stack = [first.input[0]]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen[node.name] = node
        stack.extend(node.input)
    return [n.name for n in model.graph.node if n.name in seen]
