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

from cmkd_edge.runtime.specs import DB_FLOOR, PreprocessSpec, centre_offset

from cmkd_edge.errors import ExportValidationError

DYNAMO_MIN_OPSET = 18
DEFAULT_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "logits"


def build_deploy_module(net: Any, spec: PreprocessSpec) -> Any:
    """Wrap ``net`` so it takes raw source bands: select -> centre crop -> (dB | log1p) -> clip ->
    (subtract the per-sample mean, ``spec.centre``) -> net.

    The same ops in the same order as ``PreprocessSpec.apply`` (the numpy reference the graph is
    tested against). The crop is a static slice of the input's centre: the input size is fixed by
    the bundle (``input.shape``), so its offsets are constants (``centre_offset``) computed at the
    first call and traced as such. ``net`` normalises with its own InputNorm (and clips when it was
    built with a clip), so the wrapper clips only when the network does not, keeping the graph free
    of duplicate ops.
    """
    import torch

    class DeployModel(torch.nn.Module):
        """Raw (N, len(source_bands), H, W) sensor values -> logits (N, K)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("select", torch.tensor(list(spec.select), dtype=torch.int64))
            self.identity = list(spec.select) == list(range(len(spec.source_bands)))
            self.to_db, self.to_log, self.db_factor = spec.to_db, spec.to_log, float(spec.db_factor)
            self.crop, self.centre = spec.crop, spec.centre
            clip = spec.clip
            self.clip = None if clip is None or getattr(net.norm, "has_clip", False) else (
                float(clip[0]), float(clip[1]))
            if self.centre and getattr(net.norm, "has_clip", False):
                raise ExportValidationError("a centred preprocessing spec needs a network built "
                                            "without its own clip (PreprocessSpec.clip_in_net)")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.identity:
                x = torch.index_select(x, 1, self.select)
            if self.crop is not None:
                # python ints from the (static) input shape: the exporter records constant slices
                h, w = int(x.shape[-2]), int(x.shape[-1])
                top, left = centre_offset(h, self.crop[0]), centre_offset(w, self.crop[1])
                x = x[:, :, top:top + self.crop[0], left:left + self.crop[1]]
            if self.to_db:
                x = self.db_factor * torch.log10(torch.clamp(x, min=DB_FLOOR))
            elif self.to_log:
                x = torch.log1p(torch.clamp(x, min=0.0))
            if self.clip is not None:
                x = torch.clamp(x, self.clip[0], self.clip[1])
            if self.centre:
                x = x - x.mean(dim=(-2, -1), keepdim=True)
            return self.net(x)

    return DeployModel().eval()


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
