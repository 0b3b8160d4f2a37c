"""OpenVINO runner: compile an IR (``.xml`` + ``.bin``) or an ONNX file for a device (CPU default).

Options (``OpenVinoRunner(path, threads=..., device=..., cache_dir=..., precision_hint=...,
performance_hint=...)``):

* ``device``: "CPU" (default), "GPU", "NPU", "AUTO" - any name ``Core().available_devices`` knows.
* ``cache_dir``: OpenVINO's model cache, makes a second load much faster (CACHE_DIR, set for this
  compile only, so one runner's cache never applies to another's).
* ``precision_hint``: INFERENCE_PRECISION_HINT, default "f32": on CPUs with AMX/AVX512-BF16
  OpenVINO otherwise runs float layers (an FP32 model, an INT8 model's float parts, the in-graph
  preprocessing) in bf16, which changes accuracy, so every runner - the device's, the quantization
  gate's, the IR check's - judges what the device runs. ``None`` leaves OpenVINO's own default.
* ``threads``: INFERENCE_NUM_THREADS. ``performance_hint``: "LATENCY" (default) or "THROUGHPUT";
  None leaves OpenVINO's own default (export's gate compiles this way, as it always has).

``OpenVinoRunner.from_memory(model)`` compiles an ``openvino.Model`` the caller holds (e.g. an
NNCF result) without saving it first. ``openvino`` is imported when a runner opens, not with this
module, so reading the declaration at the end stays cheap.

Thread safety: a compiled model is shared; InferRequests are not. Each ``infer`` call borrows a
request from a pool (creating one when all are busy) and returns it, so N threads use N requests
and never share one. Outputs are copied out before the request goes back to the pool.
"""

from __future__ import annotations

import os
import queue
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmkd_edge.errors import BackendUnavailableError, BundleError

from .base import Runner, TensorSpec
from .spec import BackendSpec

if TYPE_CHECKING:
    import openvino as ov

    from ..contract.bundle import Bundle
    from ..contract.manifest import Artifact

_CORE: Any = None


def _ov() -> Any:
    """The openvino module; a missing install is a one-line error naming the extra."""
    try:
        import openvino
    except ImportError as exc:
        raise BACKEND.unavailable(exc) from exc
    return openvino


def core() -> ov.Core:
    """One process-wide Core (creating one loads plugins, which is slow)."""
    global _CORE
    if _CORE is None:
        _CORE = _ov().Core()
    return _CORE


def compile_config(threads: int | None, precision_hint: str | None,
                   performance_hint: str | None = "LATENCY") -> dict[str, Any]:
    """The compile properties, shared with the benchmark that replays them in benchmark_app."""
    cfg: dict[str, Any] = {} if performance_hint is None else {"PERFORMANCE_HINT": performance_hint}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    if precision_hint:
        cfg["INFERENCE_PRECISION_HINT"] = precision_hint
    return cfg


class OpenVinoRunner(Runner):
    """Run an OpenVINO IR or ONNX model with the OpenVINO runtime."""

    name = "openvino"

    @classmethod
    def for_artifact(cls, bundle: Bundle, artifact: Artifact, *, threads: int | None = None,
                     device: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                     rebuild: bool = False) -> Runner:
        """Pin the precision (FP32 stays f32 even where the CPU would run it in bf16; FP16 runs in
        f16 on a GPU/NPU) and keep OpenVINO's model cache under ``<cache_dir>/openvino``."""
        hint = "f16" if artifact.precision == "fp16" and device not in (None, "CPU") else "f32"
        return cls(bundle.path(artifact.path), threads=threads, device=device or "CPU",
                   precision_hint=hint, cache_dir=None if cache_dir is None else Path(cache_dir) / "openvino")

    @classmethod
    def for_check(cls, model: str | os.PathLike[str] | Any, *, threads: int | None = 1,
                  **options: Any) -> Runner:
        """CPU, OpenVINO's default performance hint and the runner's f32 precision (what the device
        runs). why f32: on CPUs with AVX512-BF16/AMX OpenVINO runs float layers in bf16 by default,
        and a gate that compiled without a hint judged a bf16 model the device never runs (MSTAR
        MobileNetV2: the FP32 IR scored 90.76 % test in bf16 against 91.84 % in f32)."""
        opts: dict[str, Any] = {"threads": threads, "device": "CPU", "performance_hint": None, **options}
        return (cls(model, **opts) if isinstance(model, (str, os.PathLike))
                else cls.from_memory(model, **opts))

    def _open(self) -> None:
        device = self.options.get("device", "CPU")
        c = core()
        if device.split(":")[0] not in ("AUTO", "HETERO", "MULTI") and device not in c.available_devices:
            raise BackendUnavailableError(
                f"OpenVINO device {device!r} is not present", f"available: {c.available_devices}")
        cfg = compile_config(self.threads, self.options.get("precision_hint", "f32"),
                             self.options.get("performance_hint", "LATENCY"))
        if self.options.get("cache_dir"):  # per compile, not on the shared Core: no leak to others
            cfg["CACHE_DIR"] = str(self.options["cache_dir"])
        try:
            self.compiled = c.compile_model(str(self.path) if self.model is None else self.model,
                                            device, cfg)
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
        return {"device": self.options.get("device", "CPU"), "version": _ov().get_version(), **props}


def int8_gate_transfers(machine: str, features: frozenset[str]) -> tuple[bool, str]:
    """Whether an OpenVINO INT8 IR gated on x86 holds on a device (``machine``, ISA ``features``), and why.

    OpenVINO's ARM CPU plugin runs most INT8 models in FP16 (openvino_build_deploy PR 440); measured
    here under qemu (Cortex-A76), the INT8 IR ran as a mix of f16, f32 and u8 convolutions and moved
    labels on 14-20 of 200 MSTAR chips, so a gate measured on x86 says nothing there.
    """
    if machine == "aarch64":
        return False, ("OpenVINO's ARM CPU plugin runs INT8 IR partly in FP16: an x86 gate does not "
                       "carry over; check it on the board (`cmkd-edge evaluate BUNDLE --data CHIPS`)")
    return True, "x86 CPU plugin: INT8 kernels as gated"


BACKEND = BackendSpec(
    name="openvino", summary="OpenVINO runtime: ONNX or IR on CPU/GPU/NPU (extra: openvino)",
    library="openvino", extra="openvino", needs_gpu=False, formats=("onnx", "openvino-ir"),
    native_format="openvino-ir", auto_rank=20, runner=OpenVinoRunner,
    compile_hook="cmkd_edge.export.targets.openvino:compile_artifact",
    quantizer="cmkd_edge.export.targets.openvino:NncfQuantizer", extra_modules=("nncf",),
    int8_transfers=int8_gate_transfers)
