"""The backend-neutral Runner (after Polygraphy's ``backend/base/runner.py``).

A runner owns one loaded model on one backend. The base class does what every backend would
otherwise repeat: the open/close state machine, the context manager, and input validation with
messages that name the tensor and what was expected. Backends implement only ``_open`` (load the
model and fill ``self._inputs`` / ``self._outputs``), ``_infer`` and ``_close``, and may override
``for_artifact``, the factory the Classifier calls to turn a bundle artifact into a runner (device
name, caches, a rebuild), and ``for_check``, the one export's accuracy gate calls. Timing is not
done here: it lives in ``profiler.py`` so every backend is measured the same way.

A runner loads a file, or (``from_memory``) a model the caller holds: export runs its quantized
candidates and probe graphs through the same runners the device uses, without writing them out.

``infer`` must be safe to call from several threads at once once the runner is open; each backend
documents how it achieves that.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmkd_edge.errors import InputMismatchError

if TYPE_CHECKING:
    from ..contract.bundle import Bundle
    from ..contract.manifest import Artifact


@dataclass(frozen=True)
class TensorSpec:
    """Name, numpy dtype and shape of a model input; ``None`` marks a dynamic dimension."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype.name}[{dims}]"


class Runner(abc.ABC):
    """Load a model file on one backend and run it on numpy feeds.

    Args:
        path: the model file (``.onnx``, ``.xml``, ``.plan``).
        threads: intra-op CPU threads (None = the backend's default).
    """

    name: str = "runner"

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None,
                 **options: Any) -> None:
        self.path = Path(path)
        self.threads = threads
        self.options = options
        self.is_open = False
        self.model: Any = None  # set by from_memory; None = load self.path
        self._inputs: dict[str, TensorSpec] = {}
        self._outputs: list[str] = []

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_memory(cls, model: Any, *, threads: int | None = None, label: str = "<in-memory model>",
                    **options: Any) -> Runner:
        """A runner over a model held in memory instead of a file.

        Args:
            model: serialized bytes (an ONNX model, a TensorRT plan) or the backend's own model
                object (an ``openvino.Model``); each backend documents what it accepts.
            label: stands in for the file name in messages.
        """
        runner = cls(label, threads=threads, **options)
        runner.model = model
        return runner

    @classmethod
    def for_artifact(cls, bundle: Bundle, artifact: Artifact, *, threads: int | None = None,
                     device: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                     rebuild: bool = False) -> Runner:
        """The runner (not yet open) for one artifact of a verified bundle: the Classifier's hook.

        Default: the artifact's file with ``threads``. A backend overrides it where the artifact
        alone does not say how to load it: a device name, a model cache, a precision hint, a
        fingerprint check or a rebuild (``rebuild``: allowed to build a new engine on the device).
        """
        return cls(bundle.path(artifact.path), threads=threads)

    @classmethod
    def for_check(cls, model: str | os.PathLike[str] | Any, *, threads: int | None = 1,
                  **options: Any) -> Runner:
        """The runner (not yet open) export's checks use: the quantization gate, compile's re-gate.

        ``model`` is a file, or what :meth:`from_memory` takes. Default: that, with ``threads`` and
        the caller's runner ``options``. A backend overrides it to pin what the device would run
        where its defaults differ (OpenVINO: the CPU in f32, not the bf16 some CPUs pick), so a
        gate never judges another computation.
        """
        if isinstance(model, (str, os.PathLike)):
            return cls(model, threads=threads, **options)
        return cls.from_memory(model, threads=threads, **options)

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> Runner:
        """Load the model (idempotent). Returns self."""
        if not self.is_open:
            self._open()
            self.is_open = True
        return self

    def close(self) -> None:
        """Release the model (idempotent)."""
        if self.is_open:
            self._close()
            self.is_open = False

    def __enter__(self) -> Runner:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata ----------------------------------------------------------------------------
    def input_specs(self) -> dict[str, TensorSpec]:
        """Input name -> TensorSpec, in the model's input order."""
        self._require_open()
        return dict(self._inputs)

    def output_names(self) -> list[str]:
        self._require_open()
        return list(self._outputs)

    def max_batch(self) -> int | None:
        """Largest batch the loaded model accepts (None = unbounded dynamic batch)."""
        first = next(iter(self.input_specs().values()))
        return first.shape[0] if first.shape else None

    # -- inference ---------------------------------------------------------------------------
    def infer(self, feeds: dict[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        """Run the model. ``feeds`` maps every input name to an array of its dtype and shape.

        Raises:
            InputMismatchError: a missing/unknown input, wrong dtype, rank or fixed dimension.
        """
        self._require_open()
        if check:
            self.check_feeds(feeds)
        return self._infer(feeds)

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        missing = [n for n in self._inputs if n not in feeds]
        unknown = [n for n in feeds if n not in self._inputs]
        if missing or unknown:
            raise InputMismatchError(
                f"{self.name}: inputs {sorted(feeds)} do not match the model's {list(self._inputs)}",
                (f"missing {missing}" if missing else f"unknown {unknown}"))
        for name, spec in self._inputs.items():
            arr = feeds[name]
            if not isinstance(arr, np.ndarray):
                raise InputMismatchError(f"input {name!r} is a {type(arr).__name__}, expected a numpy array")
            if arr.dtype != spec.dtype:
                raise InputMismatchError(f"input {name!r} has dtype {arr.dtype}, expected {spec.describe()}")
            if arr.ndim != len(spec.shape) or any(
                    d is not None and d != a for d, a in zip(spec.shape, arr.shape, strict=True)):
                raise InputMismatchError(
                    f"input {name!r} has shape {list(arr.shape)}, expected {spec.describe()}")

    def _require_open(self) -> None:
        if not self.is_open:
            raise RuntimeError(f"{self.name} runner for {self.path} is not open; call open() first")

    # -- backend hooks -------------------------------------------------------------------------
    @abc.abstractmethod
    def _open(self) -> None:
        """Load ``self.path``; fill ``self._inputs`` and ``self._outputs``."""

    @abc.abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference on already validated feeds; return fresh (caller-owned) arrays."""

    def _close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release backend resources (default: nothing)."""
