"""Runtime backends: one registration line each; every table is derived from their declarations.

A backend is one module ending in ``BACKEND = BackendSpec(...)`` (see ``spec.py``). It is registered
here by import path, so listing the names imports nothing, and reading a declaration imports the
backend's module but never its library (runners import it inside ``_open``). Everything the rest of
cmkd-edge needs is derived from the declarations, on each use, so a backend registered later (a
plugin, a test) is picked up everywhere:

    BACKENDS              the registry: name -> BackendSpec (``BACKENDS.get(name)``)
    backend_spec(name)    the declaration; unknown name -> UnknownNameError listing the valid ones
    FORMATS[name]         artifact formats the backend loads
    AUTO_ORDER            names in ``backend="auto"`` order (``auto_rank``)
    BACKEND_NAMES         registered names (the manifest's ``artifacts[].backend`` values)
    ARTIFACT_FORMATS      every format some backend loads (the manifest's ``artifacts[].format``)
    DEVICE_BOUND_FORMATS  native formats of ``device_bound`` backends (need ``fingerprint``)
    libraries()           every backend's library (versions in the speed probe's device key)
    tool_modules()        libraries plus their extras' other modules (a bundle's provenance tools)
    available(name)       installed here (``find_spec``, no import), plus a GPU if it needs one
    available_backends()  the available ones, in ``auto`` order
    backend_choices()     ``("auto", *names)``, for the CLI's ``--backend`` (read on each use)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from cmkd_edge._registry import Registry

from .spec import BackendSpec


class BackendRegistry(Registry[BackendSpec]):
    """The backend registry: entries are :class:`BackendSpec` (or lazy paths to one).

    ``help`` comes from the declaration's ``summary`` so it is written once, in the backend module.
    """

    def get(self, name: str) -> BackendSpec:
        spec = super().get(name)
        if not isinstance(spec, BackendSpec) or spec.name != name:
            raise TypeError(f"backend entry {name!r} is not a BackendSpec named {name!r}: {spec!r}")
        return spec

    def help(self, name: str) -> str:
        return self.get(name).summary if name in self else ""

    def register_spec(self, spec: BackendSpec) -> BackendSpec:
        """Register an already imported declaration under its own name (plugins, tests)."""
        self.add(spec.name, spec, spec.summary)
        return spec

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a plugin or test that registered a backend for a while)."""
        self._entries.pop(name, None)
        self._help.pop(name, None)


BACKENDS = BackendRegistry("backend")
BACKENDS.add("onnxruntime", "cmkd_edge.runtime.backends.onnxruntime:BACKEND")
BACKENDS.add("openvino", "cmkd_edge.runtime.backends.openvino:BACKEND")
BACKENDS.add("tensorrt", "cmkd_edge.runtime.backends.tensorrt:BACKEND")


def backend_choices() -> tuple[str, ...]:
    """``--backend`` values: ``auto`` and every registered backend."""
    return ("auto", *BACKENDS.names())


def backend_spec(name: str) -> BackendSpec:
    """The declaration of backend ``name`` (UnknownNameError lists the valid names)."""
    return BACKENDS.get(name)


def specs() -> list[BackendSpec]:
    """Every registered declaration, in ``auto`` order (``auto_rank``, then name)."""
    return sorted((BACKENDS.get(n) for n in BACKENDS.names()), key=lambda s: (s.auto_rank, s.name))


def quantize_targets() -> tuple[str, ...]:
    """Backends ``cmkd-edge quantize`` can target (those declaring a ``quantizer``)."""
    return tuple(s.name for s in specs() if s.quantizer)


def compile_targets() -> tuple[str, ...]:
    """Backends ``cmkd-edge compile`` can target (those declaring a ``compile_hook``)."""
    return tuple(s.name for s in specs() if s.compile_hook)


def libraries() -> tuple[str, ...]:
    """Every backend's library, in registration order: the backend versions a speed probe's device
    key records (each library's distribution has its import name)."""
    return tuple(BACKENDS.get(n).library for n in BACKENDS.names())


def tool_modules() -> tuple[str, ...]:
    """Every backend's library and the other modules of its extra (NNCF, the CUDA bindings), in
    registration order: the tools a bundle's provenance names, where installed (looked up as
    distribution names: one named otherwise, like the CUDA bindings' ``cuda-python``, is left out)."""
    return tuple(dict.fromkeys(m for n in BACKENDS.names() for m in BACKENDS.get(n).modules))


def available(name: str) -> bool:
    """True when backend ``name`` is installed (and, if it needs one, an NVIDIA GPU is present)."""
    return name in BACKENDS and BACKENDS.get(name).available()


def available_backends() -> list[str]:
    """Installed backends, in ``auto`` preference order."""
    return [s.name for s in specs() if s.available()]


class _Names(Sequence[str]):
    """A read-only tuple-like view, recomputed from the declarations on every use."""

    def __init__(self, compute: Callable[[], tuple[str, ...]]) -> None:
        self._compute = compute

    def __getitem__(self, i: Any) -> Any:
        return self._compute()[i]

    def __len__(self) -> int:
        return len(self._compute())

    def __iter__(self) -> Iterator[str]:
        return iter(self._compute())

    def __eq__(self, other: object) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, (tuple, list, _Names)) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a tuple that changes: not hashable

    def __repr__(self) -> str:
        return repr(self._compute())


class _Formats(Mapping[str, tuple[str, ...]]):
    """``FORMATS[name]``: the formats backend ``name`` loads, read from its declaration."""

    def __getitem__(self, name: str) -> tuple[str, ...]:
        if name not in BACKENDS:
            raise KeyError(name)
        return BACKENDS.get(name).formats

    def __iter__(self) -> Iterator[str]:
        return iter(BACKENDS.names())

    def __len__(self) -> int:
        return len(BACKENDS.names())


def _artifact_formats() -> tuple[str, ...]:
    return tuple(dict.fromkeys(f for n in BACKENDS.names() for f in BACKENDS.get(n).formats))


def _device_bound_formats() -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.native_format for s in specs() if s.device_bound))


FORMATS: Mapping[str, tuple[str, ...]] = _Formats()
AUTO_ORDER: Sequence[str] = _Names(lambda: tuple(s.name for s in specs()))
BACKEND_NAMES: Sequence[str] = _Names(lambda: tuple(BACKENDS.names()))
ARTIFACT_FORMATS: Sequence[str] = _Names(_artifact_formats)
DEVICE_BOUND_FORMATS: Sequence[str] = _Names(_device_bound_formats)

__all__ = ["ARTIFACT_FORMATS", "AUTO_ORDER", "BACKENDS", "BACKEND_NAMES", "DEVICE_BOUND_FORMATS", "FORMATS",
           "backend_choices", "compile_targets", "libraries", "quantize_targets", "tool_modules",
           "BackendRegistry", "BackendSpec", "available", "available_backends", "backend_spec", "specs"]
