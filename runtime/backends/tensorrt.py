"""TensorRT 10 runner: deserialize a plan, run it with an execution context on a CUDA stream.

Written against the TensorRT 10 Python API (``num_io_tensors``/``get_tensor_name``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) and NVIDIA's cuda-python bindings
for memory and streams, both imported when a runner opens (``device.cuda_runtime``), never with this
module. ``TrtRunner.for_artifact`` is where a bundle's plan meets this device: the fingerprint check
(``fingerprint.py``) and, when allowed, the rebuild from the bundle's ONNX with ``build_engine``
(``trt_build.py``, the same builder ``cmkd-edge compile`` uses) into the engine cache.

Thread safety: one execution context is not re-entrant, so ``infer`` holds a lock; the GPU would
serialize the kernels anyway. Device buffers are reused and grown on demand.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from cmkd_edge.errors import BundleError

from .base import Runner, TensorSpec
from .device import cuda_check, cuda_runtime, device_fingerprint
from .fingerprint import check_fingerprint
from .spec import BackendSpec
from .trt_build import build_engine, default_engine_path

if TYPE_CHECKING:
    from ..contract.bundle import Bundle
    from ..contract.manifest import Artifact

log = logging.getLogger("cmkd_edge.runtime")


def _libraries() -> tuple[Any, Any]:
    """(tensorrt, cudart); a missing one is a one-line error naming the extra that brings both."""
    try:
        import tensorrt as trt

        return trt, cuda_runtime()
    except ImportError as exc:
        raise BACKEND.unavailable(exc) from exc


def _gpu_index(device: str | None) -> int:
    """``--device`` for TensorRT is a CUDA device index ("0", "1"); anything else means GPU 0."""
    return int(device) if device and device.isdigit() else 0


class TrtRunner(Runner):
    """Run a serialized TensorRT plan on GPU ``device`` (option, default 0)."""

    name = "tensorrt"

    @classmethod
    def for_artifact(cls, bundle: Bundle, artifact: Artifact, *, threads: int | None = None,
                     device: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                     rebuild: bool = False) -> Runner:
        """A plan that fits this GPU as it is; else, with ``rebuild``, one built from the bundle's ONNX.

        A plan is checked against this device's fingerprint first (TensorRT version, compute
        capability; a different GPU model only warns). An ONNX artifact, or a mismatching plan with
        ``rebuild=True``, is built once into ``<cache>/engines/<engine_key>.plan`` and reused.

        Raises:
            BundleError: the plan does not match this device and ``rebuild`` is False, or there is
                no ONNX artifact to rebuild it from.
            BackendUnavailableError: tensorrt or the CUDA bindings are missing.
        """
        _libraries()
        gpu = _gpu_index(device)
        here = device_fingerprint(gpu)
        if artifact.format == "tensorrt-plan":
            check = check_fingerprint(artifact.fingerprint, here)
            for w in check.warnings:
                log.warning("TensorRT engine %s: %s", artifact.id, w)
            if check.ok:
                return cls(bundle.path(artifact.path), threads=threads, device=gpu)
            if not rebuild:
                raise BundleError(f"TensorRT engine {artifact.id!r} does not match this device: "
                                  + "; ".join(check.errors), "open with rebuild=True (--rebuild) to "
                                  "rebuild it from the bundle's ONNX")
            sources = [o for o in bundle.manifest.artifacts if o.format == "onnx"]
            src = next((o for o in sources if o.precision == artifact.precision), None) or next(
                (o for o in sources if o.precision == "fp32"), None)
            if src is None:
                raise BundleError(f"cannot rebuild {artifact.id!r}: the bundle has no ONNX artifact")
        else:
            src = artifact
        plan = default_engine_path(bundle.manifest.files[src.path], artifact.precision, here, cache_dir)
        if not plan.exists():
            log.warning("building a TensorRT engine for %s (one-off, cached at %s)", artifact.id, plan)
            shape = tuple(int(d) for d in bundle.manifest.input.shape[1:])  # type: ignore[arg-type]
            build_engine(bundle.path(src.path), plan, artifact.precision, bundle.manifest.input.name,
                         shape, max_batch=artifact.max_batch, device=gpu,  # type: ignore[arg-type]
                         cache_dir=cache_dir)
        return cls(plan, threads=threads, device=gpu)

    def _open(self) -> None:
        trt, cudart = self._trt, self._cudart = _libraries()
        cuda_check(cudart.cudaSetDevice(int(self.options.get("device", 0))))
        self._logger = trt.Logger(trt.Logger.WARNING)  # why: must outlive the runtime it is given to
        self.runtime = trt.Runtime(self._logger)
        self.engine = self.runtime.deserialize_cuda_engine(
            self.path.read_bytes() if self.model is None else bytes(self.model))
        if self.engine is None:
            raise BundleError(f"TensorRT could not deserialize {self.path.name}",
                              "the engine was built for another TensorRT/GPU; open with rebuild=True")
        self.context = self.engine.create_execution_context()
        self.stream = cuda_check(cudart.cudaStreamCreate())
        self._lock = threading.Lock()
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device ptr, nbytes)
        self._max_batch: int | None = None
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                dims = tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(name))
                dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
                self._inputs[name] = TensorSpec(name, dtype, dims)
                if dims and dims[0] is None:
                    self._max_batch = int(self.engine.get_tensor_profile_shape(name, 0)[2][0])
            else:
                self._outputs.append(name)

    def max_batch(self) -> int | None:
        return self._max_batch if self._max_batch is not None else super().max_batch()

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                cuda_check(self._cudart.cudaFree(ptr))
            ptr = cuda_check(self._cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        trt, cudart = self._trt, self._cudart
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:
            for name, arr in feeds.items():
                arr = np.ascontiguousarray(arr)
                self.context.set_input_shape(name, arr.shape)
                ptr = self._device_buffer(name, arr.nbytes)
                cuda_check(cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, self.stream))
                self.context.set_tensor_address(name, ptr)
            outs = {}
            for name in self._outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                outs[name] = np.empty(shape, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
                self.context.set_tensor_address(name, self._device_buffer(name, outs[name].nbytes))
            if not self.context.execute_async_v3(self.stream):
                raise RuntimeError(f"TensorRT execution of {self.path.name} failed")
            for name, host in outs.items():
                cuda_check(cudart.cudaMemcpyAsync(host.ctypes.data, self._buffers[name][0],
                                                  host.nbytes, d2h, self.stream))
            cuda_check(cudart.cudaStreamSynchronize(self.stream))
        return outs

    def _close(self) -> None:
        cudart = self._cudart
        for ptr, _ in self._buffers.values():
            cudart.cudaFree(ptr)
        self._buffers.clear()
        cudart.cudaStreamDestroy(self.stream)
        del self.context, self.engine, self.runtime


BACKEND = BackendSpec(
    name="tensorrt", summary="TensorRT 10 engines on an NVIDIA GPU (extra: tensorrt)",
    library="tensorrt", extra="tensorrt", needs_gpu=True, formats=("tensorrt-plan", "onnx"),
    native_format="tensorrt-plan", auto_rank=10, runner=TrtRunner, build_formats=("onnx",),
    compile_hook="cmkd_edge.export.targets.tensorrt:compile_artifact", extra_modules=("cuda",),
    device_bound=True)
