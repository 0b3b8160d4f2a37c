"""A small generic registry by name (after timm's and torchdistill's), and the table of the registries
users name (``cmkd-edge list archs|methods|views|backends|devices``).

Entries are either objects (registered with the decorator) or lazy ``"module:attr"`` import paths, so
listing a registry imports nothing and choosing an entry whose module cannot be imported becomes a clear
:class:`BackendUnavailableError` rather than an ``ImportError``. Stdlib only: the runtime imports this.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from cmkd_edge.errors import BackendUnavailableError, UnknownNameError

T = TypeVar("T")

#: Where each registry a user can name lives, as ``"module:attr"``: looking one up imports only that module.
REGISTRIES: dict[str, str] = {
    "archs": "cmkd_edge.models:ARCHS",
    "methods": "cmkd_edge.distill.losses:METHODS",
    "pairings": "cmkd_edge.distill.pairing:PAIRINGS",
    "views": "cmkd_edge.data.views:VIEWS",
    "backends": "cmkd_edge.runtime.backends:BACKENDS",
    "devices": "cmkd_edge.runtime.device_profiles:DEVICES",
    "recipes": "cmkd_edge.distill.recipes:RECIPES",
    "weights": "cmkd_edge.distill.weights:WEIGHT_RULES",
}

_DISTRIBUTION = "cmkd-edge"


class Registry(Generic[T]):
    """Map names to objects or lazy import paths; a duplicate is an error, a miss lists valid names.

    Args:
        kind: what an entry is ("arch", "method", "backend"), used in messages.
        install_hint: what to tell a user whose chosen lazy entry cannot be imported; None = name the
            ``cmkd-edge[<entry>]`` extra when the installed distribution declares one of that name,
            else the module that is missing (so a hint never names an extra that does not exist).
    """

    def __init__(self, kind: str, install_hint: str | None = None) -> None:
        self.kind = kind
        self.install_hint = install_hint
        self._entries: dict[str, T | str] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str | None = None, help: str = "") -> Callable[[T], T]:  # noqa: A002
        """Decorator registering an object under ``name`` (default: its ``__name__``)."""

        def deco(obj: T) -> T:
            key = name or obj.__name__
            self.add(key, obj, help or (getattr(obj, "__doc__", "") or "").strip().split("\n")[0])
            return obj

        return deco

    def add(self, name: str, obj: T | str, help: str = "") -> None:  # noqa: A002
        """Register ``obj`` (an object or a ``"module:attr"`` string) under ``name``."""
        if name in self._entries:
            raise ValueError(f"duplicate {self.kind} name {name!r}")
        self._entries[name] = obj
        self._help[name] = help

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def help(self, name: str) -> str:
        """One-line description of an entry."""
        return self._help.get(name, "")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """Return the entry for ``name``, importing it if it was registered lazily.

        Raises:
            UnknownNameError: no such name (the message lists the valid ones).
            BackendUnavailableError: a lazy entry whose module cannot be imported.
        """
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}", f"choose one of: {', '.join(self.names())}"
            )
        entry = self._entries[name]
        if isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise BackendUnavailableError(
                    f"{self.kind} {name!r} is not installed ({exc})", self.install_hint or _missing_hint(name, exc)
                ) from exc
            entry = getattr(module, attr)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Look up ``name`` and call it with the given arguments."""
        return self.get(name)(*args, **kwargs)


def _missing_hint(name: str, exc: ImportError) -> str:
    """The extra named like the entry if the distribution declares it, else the missing module.

    Read from the installed metadata (not a copy of pyproject's extras) so the hint follows the package.
    """
    from importlib import metadata

    try:
        extras = metadata.metadata(_DISTRIBUTION).get_all("Provides-Extra") or []
    except metadata.PackageNotFoundError:  # why: a bare checkout on sys.path has no metadata
        extras = []
    if name in extras:
        return f"install the extra that provides it: pip install '{_DISTRIBUTION}[{name}]'"
    if exc.name:
        return f"install the package that provides the module {exc.name!r}"
    return "check that its module imports"


def get_registry(kind: str) -> Registry:
    """Return the registry for ``kind`` (a key of :data:`REGISTRIES`), importing only its module."""
    if kind not in REGISTRIES:
        raise UnknownNameError(f"unknown registry {kind!r}", f"choose one of: {', '.join(REGISTRIES)}")
    module_name, _, attr = REGISTRIES[kind].partition(":")
    return getattr(importlib.import_module(module_name), attr)
