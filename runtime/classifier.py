"""``Classifier``: a verified bundle + the best artifact this device can run + probabilities out.

Choosing the artifact (``select_artifacts``, a pure function of the manifest and the device):

* candidates are (backend, artifact) pairs: an artifact prepared for a backend (``artifact.backend``)
  is "native" there; any ONNX artifact may also run on ONNX Runtime or OpenVINO, and on TensorRT by
  building an engine (``rebuild=True`` only).
* ranking, best first: TensorRT (a GPU beats any CPU path) before CPU backends; then precision -
  an INT8 artifact whose ``gate_passed`` is true, then FP16 (on TensorRT only), then FP32, then
  FP16 on a CPU backend, and INT8 without a passed gate (``gate_passed`` false or absent) last;
  then native before foreign; then OpenVINO before ONNX Runtime. So a gated INT8 ONNX for ONNX
  Runtime beats an FP32 OpenVINO IR, and an FP32 IR beats the FP32 ONNX. An explicit
  ``backend``/``precision`` filters the candidates.
* a TensorRT plan whose fingerprint does not match the device is refused (explicit backend) or
  skipped (auto); with ``rebuild=True`` it is rebuilt from the bundle's ONNX into the cache.
* ``precision="auto"`` (and no explicit ``artifact``) then measures: among the candidates whose gate
  passed (and FP32), the fastest at batch 1 on this device wins (``speed_probe.py``: a short probe,
  cached per device and bundle). The order above is the fallback when probing is off
  (``probe=False``, ``$CMKD_EDGE_SPEED_PROBE=0``) or impossible. ``Classifier.selection`` says which
  rule chose the artifact and why (``classify --json`` prints it).

Nothing here knows a backend by name: "TensorRT" above is any backend declared ``needs_gpu``,
"by building an engine" any of its ``build_formats``, the order is ``auto_rank``, and loading an
artifact is the declared runner's ``for_artifact`` hook (``backends/spec.py``).

``predict`` is thread-safe: it holds no mutable state, and every runner's ``infer`` is thread-safe.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmkd_edge.errors import BackendUnavailableError, BundleError, ConfigError

from .backends import AUTO_ORDER, BACKENDS, available_backends, backend_spec
from .backends.base import Runner
from .contract.bundle import Bundle, open_bundle
from .contract.manifest import PRECISIONS, Artifact, Manifest
from .contract.validate import validate_input

log = logging.getLogger("cmkd_edge.runtime")


def _rank(a: Artifact, on_gpu: bool) -> int:
    """Precision rank (lower is better); only the artifact's own gate counts for INT8."""
    if a.precision == "int8":
        return 0 if a.gate_passed is True else 4
    if a.precision == "fp16":
        return 1 if on_gpu else 3
    return 2


def select_artifacts(manifest: Manifest, backend: str = "auto", precision: str = "auto",
                     backends: list[str] | None = None, rebuild: bool = False
                     ) -> list[tuple[str, Artifact]]:
    """Every (backend, artifact) this device could run, best first (see module docstring)."""
    if backend != "auto" and backend not in BACKENDS:
        BACKENDS.get(backend)  # raises UnknownNameError listing the valid names
    if precision != "auto" and precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}", f"choose auto or one of {PRECISIONS}")
    avail = available_backends() if backends is None else backends
    if backend != "auto" and backend not in avail:
        spec = backend_spec(backend)
        raise BackendUnavailableError(
            f"backend {backend!r} is not available on this device",
            f"available: {', '.join(avail) or 'none'}; install its extra ({spec.install_hint})"
            + (" and it also needs an NVIDIA GPU" if spec.needs_gpu else ""))
    scored: list[tuple[tuple[int, int, int, int], str, Artifact]] = []
    for i, b in enumerate(AUTO_ORDER if backend == "auto" else (backend,)):
        if b not in avail:
            continue
        spec = backend_spec(b)
        for a in manifest.artifacts:
            native = a.backend == b and a.format in spec.formats
            # any ONNX artifact may run elsewhere; a format the backend must build from only on rebuild
            foreign_onnx = (a.format == "onnx" and not native and "onnx" in spec.formats
                            and ("onnx" not in spec.build_formats or rebuild))
            if (native or foreign_onnx) and precision in ("auto", a.precision):
                gpu_first = 0 if spec.needs_gpu else 1
                scored.append(((gpu_first, _rank(a, spec.needs_gpu), 0 if native else 1, i), b, a))
    out = [(b, a) for _, b, a in sorted(scored, key=lambda t: t[0])]
    if not out:
        have = sorted({f"{a.backend}/{a.precision}" for a in manifest.artifacts})
        raise BundleError(f"no artifact for backend {backend!r} precision {precision!r} in the bundle",
                          f"it has: {', '.join(have)}; available backends: {', '.join(avail)}")
    return out


def _explicit(backend: str, precision: str, artifact: str | None) -> dict[str, Any] | None:
    """The selection record when the caller chose (an artifact or a precision): no probe then."""
    if artifact is not None:
        return {"how": "explicit artifact", "why": f"artifact {artifact!r} was asked for"}
    if precision != "auto":
        where = f" on {backend}" if backend != "auto" else ""
        return {"how": "explicit precision",
                "why": f"precision {precision}{where} was asked for; best of the fixed order"}
    return None


def activate(logits: np.ndarray, activation: str) -> np.ndarray:
    """Softmax over classes (multiclass) or elementwise sigmoid (multilabel), float32."""
    z = logits.astype(np.float32, copy=False)
    if activation == "sigmoid":
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class Classifier:
    """A loaded model from a bundle. Build with :meth:`Classifier.open`; close (or use ``with``)."""

    bundle: Bundle
    artifact: Artifact
    backend: str
    runner: Runner
    threads: int | None = None
    selection: dict[str, Any] | None = None  # how the artifact was chosen, and why

    @classmethod
    def open(cls, bundle: str | os.PathLike[str] | Bundle, backend: str = "auto",
             precision: str = "auto", threads: int | None = None, rebuild: bool = False, *,
             artifact: str | None = None, device: str | None = None,
             cache_dir: str | os.PathLike[str] | None = None,
             probe: bool | None = None) -> Classifier:
        """Verify ``bundle`` and load the best artifact (or ``artifact`` by id) for this device.

        ``probe``: with ``precision="auto"``, rank gated artifacts by a measured batch-1 latency
        (default on unless ``$CMKD_EDGE_SPEED_PROBE=0``); False keeps the fixed order.

        Raises:
            BundleError: bad/tampered bundle, no usable artifact, TensorRT fingerprint mismatch.
            BackendUnavailableError: the requested backend is not installed on this device.
        """
        b = bundle if isinstance(bundle, Bundle) else open_bundle(bundle, cache_dir=cache_dir)
        pairs = select_artifacts(b.manifest, backend, precision, rebuild=rebuild)
        if artifact is not None:
            pairs = [(be, a) for be, a in pairs if a.id == artifact] or [
                (be, a) for be, a in select_artifacts(b.manifest, backend, "auto", rebuild=rebuild)
                if a.id == artifact]
            if not pairs:
                b.manifest.artifact(artifact)  # raises naming the valid ids
                raise BundleError(f"artifact {artifact!r} cannot run on backend {backend!r} here")
        selection = _explicit(backend, precision, artifact)
        gates: dict[str, Any] = {}
        if selection is None:  # auto: never an artifact whose gate failed on this device class
            from .device_gates import screen

            pairs, gates = screen(b, pairs, cache_dir)
            if not pairs:
                raise BundleError("every artifact of the bundle failed its gate on this device class",
                                  "see `cmkd-edge evaluate BUNDLE --regate`; choose one with --precision")
        if selection is None:
            from .speed_probe import probing_enabled, rank_by_speed

            if probing_enabled(probe):
                pairs, selection = rank_by_speed(b, pairs, threads=threads, device=device,
                                                 cache_dir=cache_dir, rebuild=rebuild)
            else:
                selection = {"how": "fixed order", "probe": None,
                             "why": "speed probe disabled; fixed order (gated INT8, then FP32, "
                                    "native, OpenVINO before ONNX Runtime)"}
        errors: list[str] = []
        for be, a in pairs:
            try:
                runner = backend_spec(be).runner.for_artifact(
                    b, a, threads=threads, device=device, cache_dir=cache_dir, rebuild=rebuild)
                runner.open()
            except (BackendUnavailableError, BundleError) as exc:
                if backend != "auto" or artifact is not None:
                    raise
                errors.append(f"{be}/{a.id}: {exc.one_line()}")
                log.warning("skipping %s/%s: %s", be, a.id, exc.one_line())
                continue
            from .device_profiles import warn_if_other_target

            note = warn_if_other_target(b.manifest, a, str(getattr(b, "root", id(b))))
            if f"{be}:{a.id}" in gates.get("gated_elsewhere", ()):
                gates["note"] = (f"{a.id} was gated where it was quantized, not on this device class "
                                 f"({gates['device_class']}): `cmkd-edge evaluate BUNDLE --regate` checks it here")
            elif any(h.startswith(f"{be}:{a.id} ") for h in gates.get("gate_does_not_hold_here", ())):
                gates["note"] = (f"{a.id}'s gate does not hold on this device class ({gates['device_class']}) "
                                 "and nothing else could run: `cmkd-edge evaluate BUNDLE --regate` checks it here")
            clf = cls(b, a, be, runner, threads, selection=dict(
                selection, chosen=f"{be}:{a.id}", skipped=list(errors),
                **({"target_warning": note} if note else {}), **({"device_gates": gates} if gates else {})))
            clf._check_model()
            return clf
        raise BundleError("no artifact of the bundle could be loaded", "; ".join(errors))

    # -- properties ----------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.manifest.class_names

    @property
    def precision(self) -> str:
        return self.artifact.precision

    @property
    def input_name(self) -> str:
        return self._input

    def _check_model(self) -> None:
        """The loaded model must agree with the manifest (so predict can skip the runner's check)."""
        specs = self.runner.input_specs()
        self._input = self.manifest.input.name if self.manifest.input.name in specs else next(iter(specs))
        spec, want = specs[self._input], self.manifest.input.shape
        if len(spec.shape) != 4 or any(s is not None and w is not None and s != w
                                       for s, w in zip(spec.shape[1:], want[1:], strict=True)):
            raise BundleError(f"artifact {self.artifact.id!r} input {spec.describe()} disagrees with "
                              f"the manifest's input shape {list(want)}")
        if spec.dtype != np.float32:
            raise BundleError(f"artifact {self.artifact.id!r} takes {spec.dtype}, expected float32 input")
        outs = self.runner.output_names()
        self._output = self.manifest.output.name if self.manifest.output.name in outs else outs[0]
        mb = self.runner.max_batch()
        self._fixed_batch = spec.shape[0] if spec.shape[0] is not None else None
        limits = [n for n in (mb, self.artifact.max_batch) if n]
        self._max_batch = min(limits) if limits else None

    # -- inference -----------------------------------------------------------------------------
    def infer_logits(self, x: np.ndarray) -> np.ndarray:
        """Model-only call on validated float32 (N, C, H, W): split/pad to the artifact's batch."""
        mb = self._max_batch
        if mb is None or (x.shape[0] <= mb and self._fixed_batch is None) or x.shape[0] == mb:
            return self.runner.infer({self._input: x}, check=False)[self._output]
        parts = []
        for i in range(0, x.shape[0], mb):
            chunk = x[i:i + mb]
            n = chunk.shape[0]
            if self._fixed_batch is not None and n < mb:  # static batch: pad, then drop the padding
                chunk = np.concatenate([chunk, np.zeros((mb - n, *chunk.shape[1:]), np.float32)])
            parts.append(self.runner.infer({self._input: chunk}, check=False)[self._output][:n])
        return np.concatenate(parts)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, K) for raw sensor input, validated as :meth:`predict` validates it (nodata
        rejected): for a caller that judges the same outputs twice (evaluate, then its re-gate)."""
        return self.infer_logits(validate_input(x, self.manifest.input).x)

    def predict(self, x: np.ndarray, *, nodata_policy: str = "reject",
                nodata: float | None = None) -> np.ndarray:
        """Class probabilities (N, K) float32 for raw sensor input (N, C, H, W) or (C, H, W).

        Under ``nodata_policy="mask"`` rows of patches with NaN/Inf/nodata pixels are NaN.
        """
        v = validate_input(x, self.manifest.input, nodata_policy=nodata_policy, nodata=nodata)
        probs = activate(self.infer_logits(v.x), self.manifest.output.activation)
        if v.valid is not None:
            probs = probs.copy()
            probs[~v.valid] = np.nan
        return probs

    def classify_scene(self, path: str | os.PathLike[str], out: str | os.PathLike[str],
                       **kwargs: Any) -> Any:
        """Shortcut for :func:`cmkd_edge.runtime.scene.classify_scene` with this classifier."""
        from .scene import classify_scene

        return classify_scene(self, path, out, **kwargs)

    def describe(self) -> dict[str, Any]:
        info = {"backend": self.backend, "artifact": self.artifact.id, "format": self.artifact.format,
                "precision": self.precision, "threads": self.threads, "path": self.artifact.path,
                "max_batch": self._max_batch, "selection": self.selection}
        describe = getattr(self.runner, "describe", None)
        if describe:
            info["runner"] = describe()
        return info

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

