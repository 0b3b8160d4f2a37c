"""``BackendSpec``: everything the rest of cmkd-edge knows about a backend, declared in one place.

Each backend module (``onnxruntime.py``, ``openvino.py``, ``tensorrt.py``) ends with one
``BACKEND = BackendSpec(...)``; ``backends/__init__.py`` registers it by import path and derives
every table from the declarations (names, formats, ``auto`` order, availability, install hints), and
the manifest and the CLI take theirs from there. Adding a backend is therefore one module plus one
registration line. Stdlib only: a declaration must be readable without importing its library.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cmkd_edge.errors import BackendUnavailableError

from .device import has_nvidia_gpu

if TYPE_CHECKING:
    from .base import Runner


@dataclass(frozen=True)
class BackendSpec:
    """A backend's declaration.

    Attributes:
        name: the registry key, ``--backend`` value and ``Artifact.backend`` value.
        summary: one line for ``cmkd-edge list backends``.
        library: import name of the backend's library; availability is
            ``importlib.util.find_spec(library)`` (nothing is imported).
        extra: the pip extra that installs ``library`` (None: part of the base install).
        extra_modules: the other import names that extra brings (``nncf`` for the export side's
            quantizer, the CUDA bindings for the runner): the CLI's "needs X (the [extra] extra)"
            checks and the tool versions a bundle records are derived from these.
        needs_gpu: True when the backend also needs an NVIDIA GPU; such backends rank before any
            CPU backend and FP16 counts as a first-class precision on them.
        formats: artifact formats its runner loads (``Artifact.format`` values).
        native_format: the format the backend's compile step writes (one of ``formats``).
        auto_rank: position in ``backend="auto"`` (lower is tried first).
        runner: the :class:`~cmkd_edge.runtime.backends.base.Runner` subclass; its ``for_artifact``
            classmethod is the runner factory hook the Classifier calls.
        build_formats: formats in ``formats`` it can only load by building its native format on the
            device first (TensorRT from ONNX); the Classifier offers them only with ``rebuild=True``.
        compile_hook: ``"module:function"`` of the export-side compile step, resolved lazily by
            ``cmkd-edge compile`` (None: the backend runs the bundle's ONNX as it is).
        quantizer: ``"module:Class"`` of the export-side quantization ladder for this backend,
            resolved lazily by ``cmkd-edge quantize`` (None: quantize does not target it).
        device_bound: its native format runs only on the device it was built for (a TensorRT
            plan), so the manifest refuses such an artifact without a device ``fingerprint``.
        int8_transfers: ``(machine, features) -> (holds, why)``: whether an INT8 artifact gated on
            the build host holds on a target device, for a backend whose INT8 kernels differ by
            device (OpenVINO's ARM plugin); read through ``device_profiles.int8_transfers``.
            None: its INT8 runs as gated everywhere.
    """

    name: str
    summary: str
    library: str
    extra: str | None
    needs_gpu: bool
    formats: tuple[str, ...]
    native_format: str
    auto_rank: int
    runner: type[Runner]
    build_formats: tuple[str, ...] = ()
    compile_hook: str | None = None
    quantizer: str | None = None
    extra_modules: tuple[str, ...] = ()
    device_bound: bool = False
    int8_transfers: Callable[[str, frozenset[str]], tuple[bool, str]] | None = None

    def __post_init__(self) -> None:
        if self.native_format not in self.formats:
            raise ValueError(f"backend {self.name!r}: native format {self.native_format!r} "
                             f"is not among its formats {self.formats}")
        if not set(self.build_formats) <= set(self.formats):
            raise ValueError(f"backend {self.name!r}: build formats {self.build_formats} must be "
                             f"among its formats {self.formats}")

    def installed(self) -> bool:
        """True when ``library`` can be found (probe only: nothing is imported)."""
        try:
            return importlib.util.find_spec(self.library) is not None
        except (ValueError, ImportError):
            return False

    def available(self) -> bool:
        """True when this device could run the backend: library installed (and a GPU if needed)."""
        return self.installed() and (not self.needs_gpu or has_nvidia_gpu())

    @property
    def install_hint(self) -> str:
        """What a user runs to get the backend's library."""
        if self.extra is None:
            return f"{self.library} is part of the base install: pip install --force-reinstall cmkd-edge"
        where = " on the Jetson / NVIDIA GPU machine" if self.needs_gpu else ""
        return f"pip install 'cmkd-edge[{self.extra}]'{where}"

    @property
    def modules(self) -> tuple[str, ...]:
        """Every import name the backend's install brings: ``library`` first, then ``extra_modules``."""
        return (self.library, *self.extra_modules)

    def unavailable(self, exc: ImportError | None = None) -> BackendUnavailableError:
        """The error to raise when the backend's library (or a companion of it) does not import."""
        what = f" ({exc})" if exc is not None else ""
        return BackendUnavailableError(f"backend {self.name!r} is not installed{what}",
                                       self.install_hint)
