"""TensorRT 10 runner: deserialize a plan, run it with an execution context on a CUDA stream.

Written against the TensorRT 10 Python API (``num_io_tensors``/``get_tensor_name``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) and NVIDIA's cuda-python bindings
for memory and streams. Fingerprint checks happen before this runner is built (``fingerprint.py``);
``build_engine`` (``trt_build.py``, the same builder ``cmkd-edge compile`` uses) rebuilds a plan
from the bundle's ONNX on the device when allowed.

Thread safety: one execution context is not re-entrant, so ``infer`` holds a lock; the GPU would
serialize the kernels anyway. Device buffers are reused and grown on demand.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import tensorrt as trt

try:  # cuda-python >= 12.6 moved the bindings
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - older cuda-python
    from cuda import cudart  # type: ignore[no-redef]

from cmkd_edge.errors import BackendUnavailableError, BundleError

from ..base import Runner, TensorSpec
from ..trt_build import build_engine  # noqa: F401  (the one builder; re-exported for the rebuild)

_LOGGER = trt.Logger(trt.Logger.WARNING)


def cuda_check(result: Any) -> Any:
    """Unpack a cuda-python ``(err, *values)`` tuple, raising on a CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendUnavailableError(f"CUDA call failed: {cudart.cudaGetErrorString(err)[1]!r}")
    return values[0] if len(values) == 1 else values


class TrtRunner(Runner):
    """Run a serialized TensorRT plan on GPU ``device`` (option, default 0)."""

    name = "tensorrt"

    def _open(self) -> None:
        cuda_check(cudart.cudaSetDevice(int(self.options.get("device", 0))))
        self.runtime = trt.Runtime(_LOGGER)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
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
                cuda_check(cudart.cudaFree(ptr))
            ptr = cuda_check(cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
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
        for ptr, _ in self._buffers.values():
            cudart.cudaFree(ptr)
        self._buffers.clear()
        cudart.cudaStreamDestroy(self.stream)
        del self.context, self.engine, self.runtime
