"""OpenVINO runner: compile an IR (``.xml`` + ``.bin``) or an ONNX file for a device (CPU default).

Options (``OpenVinoRunner(path, threads=..., device=..., cache_dir=..., precision_hint=...,
performance_hint=...)``):

* ``device``: "CPU" (default), "GPU", "NPU", "AUTO" - any name ``Core().available_devices`` knows.
* ``cache_dir``: OpenVINO's model cache, makes a second load much faster (CACHE_DIR).
* ``precision_hint``: INFERENCE_PRECISION_HINT, e.g. "f32". Set it explicitly for FP32 artifacts:
  on CPUs with AMX/AVX512-BF16 OpenVINO otherwise runs FP32 models in bf16, which changes accuracy.
* ``threads``: INFERENCE_NUM_THREADS. ``performance_hint``: "LATENCY" (default) or "THROUGHPUT".

Thread safety: a compiled model is shared; InferRequests are not. Each ``infer`` call borrows a
request from a pool (creating one when all are busy) and returns it, so N threads use N requests
and never share one. Outputs are copied out before the request goes back to the pool.
"""

from __future__ import annotations

import queue
from typing import Any

import numpy as np
import openvino as ov

from cmkd_edge.errors import BackendUnavailableError, BundleError

from ..base import Runner, TensorSpec

_CORE: ov.Core | None = None


def core() -> ov.Core:
    """One process-wide Core (creating one loads plugins, which is slow)."""
    global _CORE
    if _CORE is None:
        _CORE = ov.Core()
    return _CORE


def compile_config(threads: int | None, precision_hint: str | None,
                   performance_hint: str = "LATENCY") -> dict[str, Any]:
    """The compile properties, shared with the benchmark that replays them in benchmark_app."""
    cfg: dict[str, Any] = {"PERFORMANCE_HINT": performance_hint}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    if precision_hint:
        cfg["INFERENCE_PRECISION_HINT"] = precision_hint
    return cfg


class OpenVinoRunner(Runner):
    """Run an OpenVINO IR or ONNX model with the OpenVINO runtime."""

    name = "openvino"

    def _open(self) -> None:
        device = self.options.get("device", "CPU")
        c = core()
        if device.split(":")[0] not in ("AUTO", "HETERO", "MULTI") and device not in c.available_devices:
            raise BackendUnavailableError(
                f"OpenVINO device {device!r} is not present", f"available: {c.available_devices}")
        if self.options.get("cache_dir"):
            c.set_property({"CACHE_DIR": str(self.options["cache_dir"])})
        cfg = compile_config(self.threads, self.options.get("precision_hint"),
                             self.options.get("performance_hint", "LATENCY"))
        try:
            self.compiled = c.compile_model(str(self.path), device, cfg)
        except RuntimeError as exc:
            raise BundleError(f"OpenVINO cannot compile {self.path.name} ({str(exc).splitlines()[0]})",
                              "check the IR/ONNX version against the installed openvino") from exc
        self._inputs = {}
        for port in self.compiled.inputs:
            shape = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
            name = port.get_any_name()
            self._inputs[name] = TensorSpec(name, np.dtype(port.get_element_type().to_dtype()), shape)
        self._outputs = [p.get_any_name() for p in self.compiled.outputs]
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        self._pool.put(self.compiled.create_infer_request())

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            req = self._pool.get_nowait()
        except queue.Empty:
            req = self.compiled.create_infer_request()
        try:
            # share_inputs avoids a copy: the base already checked dtype; contiguity is required.
            req.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()}, share_inputs=True)
            return {n: np.array(req.get_output_tensor(i).data, copy=True)
                    for i, n in enumerate(self._outputs)}
        finally:
            self._pool.put(req)

    def _close(self) -> None:
        self._pool = queue.SimpleQueue()
        del self.compiled

    def describe(self) -> dict[str, Any]:
        props = {}
        for key in ("INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT",
                    "NUM_STREAMS"):
            try:
                props[key] = str(self.compiled.get_property(key))
            except RuntimeError:
                pass
        return {"device": self.options.get("device", "CPU"), "version": ov.get_version(), **props}
