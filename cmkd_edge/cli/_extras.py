"""Which install extra each command needs, checked before the command does any work.

Why: the base install (``pip install cmkd-edge``) is the runtime only, so on a device every command but
``classify``/``profile``/``bundle``/``list`` lacks torch, onnx or openvino. Without a check the user met
a traceback ending in ``ModuleNotFoundError`` minutes into a run (or, for ``profile --plot``, after the
profiling). The CLI root checks each command's fixed needs (``cmkd_edge.cli.REQUIRES``); a command
whose needs depend on its options calls :func:`require` before it starts; and the root turns any
late ``ModuleNotFoundError`` of an optional package into the same one line (:func:`missing_extra_error`).
Stdlib only.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from cmkd_edge.errors import BackendUnavailableError

#: the extras that are not a backend's: extra -> the import names it provides
_OWN_EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "onnx", "onnxscript", "onnxslim", "sklearn"),
    "plot": ("matplotlib",),
}
#: the smallest install that brings each of those; torch's CPU build first (README: a bare torch
#: requirement pulls a multi-GB CUDA build), matplotlib alone rather than all of [train]
_OWN_INSTALL: dict[str, str] = {
    "train": "pip install torch==2.13.0 'cmkd-edge[train]'",
    "plot": "pip install 'cmkd-edge[plot]' (or just pip install matplotlib)",
}


def extra_table() -> dict[str, tuple[str, ...]]:
    """extra -> the import names ``pip install 'cmkd-edge[extra]'`` brings.

    A backend's extra comes from its declaration (``BackendSpec.extra`` and ``modules``), read on
    each call, so a backend registered later (a plugin, a test) is known here too.
    """
    from cmkd_edge.runtime.backends import specs

    table = dict(_OWN_EXTRAS)
    for s in specs():
        if s.extra is not None:  # a backend may share an extra (a plugin's library in [train])
            table[s.extra] = tuple(dict.fromkeys((*table.get(s.extra, ()), *s.modules)))
    return table


def install_command(extra: str) -> str:
    """What a user runs to get ``extra``: a backend's own ``install_hint``, or the table above."""
    from cmkd_edge.runtime.backends import specs

    hints = {s.extra: s.install_hint for s in specs() if s.extra is not None}
    return _OWN_INSTALL.get(extra) or hints[extra]


def provided_by() -> dict[str, str]:
    """import name -> the extra that provides it."""
    return {mod: extra for extra, mods in extra_table().items() for mod in mods}


def installed(module: str) -> bool:
    """True when ``module`` can be imported (``find_spec`` only: nothing is imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken __spec__
        return False


def _error(what: str, modules: list[str], extra: str) -> BackendUnavailableError:
    names = modules[0] if len(modules) == 1 else f"{', '.join(modules[:-1])} and {modules[-1]}"
    verb = "is" if len(modules) == 1 else "are"
    return BackendUnavailableError(f"{what} needs {names}, which {verb} not installed "
                                   f"(the [{extra}] extra)", install_command(extra))


def require(what: str, *extras: str, modules: Iterable[str] | None = None) -> None:
    """Raise one clear error if a module of ``extras`` (or the given ``modules``) is missing.

    Args:
        what: what needs it, as the user typed it (``"train-teacher"``, ``"profile --plot"``).
        extras: extra names of :func:`extra_table`; every module of each is required.
        modules: instead of whole extras, only these import names (each mapped to its extra).

    Raises:
        BackendUnavailableError: names the missing modules, the extra and the install command.
    """
    table, by = extra_table(), provided_by()
    wanted = list(modules) if modules is not None else [m for e in extras for m in table[e]]
    for extra in dict.fromkeys(by[m] for m in wanted):
        missing = [m for m in wanted if by[m] == extra and not installed(m)]
        if missing:
            raise _error(what, missing, extra)


def missing_extra_error(exc: ImportError, what: str) -> BackendUnavailableError | None:
    """The one-line error for an ImportError of an optional package, or None for anything else."""
    root = (getattr(exc, "name", None) or "").partition(".")[0]
    extra = provided_by().get(root)
    return None if extra is None else _error(what, [root], extra)


def require_backend(what: str, name: str, *, export_side: bool = False) -> None:
    """An explicitly chosen backend that is not installed: name its extra before anything opens.

    Running needs the backend's library; the export side (``quantize``) every module of its extra
    (OpenVINO's NNCF). A backend that also needs a GPU is left to the runtime's own "not available
    on this device", which names both the extra and the GPU. ``auto`` and base-install backends
    need nothing here.
    """
    from cmkd_edge.runtime.backends import BACKENDS

    if name not in BACKENDS:
        return  # "auto"; an unknown name is click's (or the registry's) error
    spec = BACKENDS.get(name)
    if spec.extra is None or (spec.needs_gpu and not export_side):
        return
    require(f"{what} --backend {name}", modules=spec.modules if export_side else (spec.library,))
