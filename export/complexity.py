"""Parameters and multiply-accumulates of an exported ONNX graph, for the bundle's model card.

Why from the ONNX file and not from the torch module: the file is what ships (preprocessing inside,
onnxslim's folds applied), and the counts then describe exactly the artifact a report lists. MACs
are counted for Conv, ConvTranspose, Gemm and MatMul (the nodes that hold nearly all the work of a
CNN student) per input item, from the shapes ONNX shape inference gives; other nodes are free here.
"""

from __future__ import annotations

import math
import os
from typing import Any


def _dims(vi: Any) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]


def _per_item(shape: list[int | None]) -> int | None:
    """Elements per batch item (the first axis is the batch)."""
    rest = shape[1:]
    return None if not rest or any(d is None for d in rest) else math.prod(rest)  # type: ignore[arg-type]


def onnx_complexity(path: str | os.PathLike[str]) -> dict[str, int | None]:
    """``{"params": weights in initializers, "macs": per-item MACs or None when shapes are unknown}``."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    params = int(sum(math.prod(s) for s in inits.values()))
    inferred = shape_inference.infer_shapes(model)
    shapes = {vi.name: _dims(vi) for vi in (*inferred.graph.value_info, *inferred.graph.input,
                                           *inferred.graph.output)}
    shapes.update({k: [None, *v] for k, v in inits.items()})  # weights: a pseudo batch axis
    macs, known = 0, True
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        out = _per_item(shapes.get(node.output[0], []))
        w = inits.get(node.input[1]) if len(node.input) > 1 else None
        if out is None:
            known = False
            continue
        if node.op_type in ("Conv", "ConvTranspose") and w is not None:
            k = math.prod(w[1:]) if node.op_type == "Conv" else math.prod(w[2:]) * w[0] // max(1, w[1])
            macs += out * k
        elif node.op_type == "Gemm" and w is not None:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            macs += out * (w[1] if trans_b else w[0])
        elif node.op_type == "MatMul":
            a = shapes.get(node.input[0], [])
            if not a or a[-1] is None:
                known = False
                continue
            macs += out * int(a[-1])
        else:
            known = False
    return {"params": params, "macs": macs if known else None}
