"""ONNX Runtime runner (after Polygraphy's ``backend/onnxrt/runner.py``).

CPU execution provider only: it ships with the base install and runs everywhere; GPU users get
TensorRT. Thread safety: ``InferenceSession.run`` is documented as safe to call concurrently, so one
session serves every thread.

Export runs its models through this runner too (parity, the accuracy gate, layer sensitivity,
load checks): ``OrtRunner.from_memory(onnx_bytes)`` runs a model that is not on disk, and the
``optimize=False`` option keeps the graph as written so every intermediate tensor a probe asks
for is the one the graph names. ``onnxruntime`` is imported when a runner opens, not with this
module, so reading the declaration at the end stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cmkd_edge.errors import BundleError

from .base import Runner, TensorSpec
from .spec import BackendSpec

if TYPE_CHECKING:
    import onnxruntime as ort

_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(uint16)": np.uint16,
    "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def _ort() -> Any:
    """The onnxruntime module; a missing install is a one-line error naming how to get it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise BACKEND.unavailable(exc) from exc
    return onnxruntime


def session_options(threads: int | None = None, optimize: bool = True) -> ort.SessionOptions:
    """Options used for every session: full graph optimisation, sequential, ``threads`` intra-op.

    Sequential execution with one inter-op thread: the student is a chain of ops, parallel branches
    gain nothing and extra pools would compete for the cores the intra-op pool uses.
    ``optimize=False`` disables graph optimisation (no fusion, no constant folding): for probes that
    read intermediate tensors and must see them as the graph computes them.
    """
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3
    return so


class OrtRunner(Runner):
    """Run an ONNX model with ONNX Runtime on the CPU.

    Options: ``optimize`` (default True, see :func:`session_options`), ``disabled_optimizers``
    (transformer names ONNX Runtime skips). ``from_memory`` takes the serialized model bytes.
    """

    name = "onnxruntime"

    @classmethod
    def for_artifact(cls, bundle: Any, artifact: Any, *, threads: int | None = None,
                     device: str | None = None, cache_dir: Any = None, rebuild: bool = False) -> Runner:
        """The artifact's file, without the graph transformers it records
        (``Artifact.disabled_optimizers``: a float stem's QDQ propagation)."""
        return cls(bundle.path(artifact.path), threads=threads,
                   disabled_optimizers=tuple(artifact.disabled_optimizers or ()))

    def _open(self) -> None:
        ort = _ort()
        try:
            self.session = ort.InferenceSession(
                str(self.path) if self.model is None else self.model,
                sess_options=session_options(self.threads, self.options.get("optimize", True)),
                providers=["CPUExecutionProvider"],
                disabled_optimizers=list(self.options.get("disabled_optimizers") or ()) or None)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise BundleError(f"ONNX Runtime cannot load {self.path.name} ({exc})".splitlines()[0],
                              "the model may need a newer onnxruntime (check opset/IR version)") from exc
        self._inputs = {
            i.name: TensorSpec(i.name, np.dtype(_DTYPES.get(i.type, np.float32)),
                               tuple(d if isinstance(d, int) and d > 0 else None for d in i.shape))
            for i in self.session.get_inputs()}
        self._outputs = [o.name for o in self.session.get_outputs()]

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._outputs, self.session.run(self._outputs, feeds), strict=True))

    def _close(self) -> None:
        del self.session

    def describe(self) -> dict[str, Any]:
        return {"providers": self.session.get_providers(), "version": _ort().__version__}


BACKEND = BackendSpec(
    name="onnxruntime", summary="ONNX Runtime, CPU execution provider (base install)",
    library="onnxruntime", extra=None, needs_gpu=False, formats=("onnx",), native_format="onnx",
    auto_rank=30, runner=OrtRunner, quantizer="cmkd_edge.export.targets.onnxruntime:OrtQuantizer")
