"""Find a registry by the name users type (``cmkd-edge list archs``), importing only that one."""

from __future__ import annotations

import importlib

from cmkd_edge._registry import Registry
from cmkd_edge.errors import UnknownNameError

_WHERE = {
    "archs": "cmkd_edge.models:ARCHS",
    "methods": "cmkd_edge.distill.losses:METHODS",
    "views": "cmkd_edge.data.views:VIEWS",
    "backends": "cmkd_edge.runtime.backends:BACKENDS",
}


def get_registry(kind: str) -> Registry:
    """Return the registry for ``kind`` (archs, methods, views, backends)."""
    if kind not in _WHERE:
        raise UnknownNameError(f"unknown registry {kind!r}", f"choose one of: {', '.join(_WHERE)}")
    module_name, _, attr = _WHERE[kind].partition(":")
    return getattr(importlib.import_module(module_name), attr)
