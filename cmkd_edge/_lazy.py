"""Lazy package exports (PEP 562): ``from pkg import name`` imports ``name``'s module only then.

Packages use it so that importing them stays cheap (the data layer loads torch only when a dataset is
opened; the runtime loads no backend until one is used). Stdlib only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``name`` from ``exports[name]`` (a module path, absolute or
    relative to ``package`` when it starts with a dot)."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
