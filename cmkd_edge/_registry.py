"""A small generic registry by name (after timm's and torchdistill's): archs, methods, views, backends.

Entries are either objects (registered with the decorator) or lazy ``"module:attr"`` import paths, so
listing a registry imports nothing and choosing a backend that is not installed becomes a clear
:class:`BackendUnavailableError` rather than an ``ImportError``. Stdlib only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from cmkd_edge.errors import BackendUnavailableError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Map names to objects or lazy import paths; a duplicate is an error, a miss lists valid names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
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
                    f"{self.kind} {name!r} is not installed ({exc})",
                    f"install the extra that provides it, e.g. pip install 'cmkd-edge[{name}]'",
                ) from exc
            entry = getattr(module, attr)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Look up ``name`` and call it with the given arguments."""
        return self.get(name)(*args, **kwargs)
