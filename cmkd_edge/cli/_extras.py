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

#: extra -> the import names it provides (what ``pip install 'cmkd-edge[extra]'`` brings)
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "onnx", "onnxscript", "onnxslim", "sklearn"),
    "plot": ("matplotlib",),
    "openvino": ("openvino", "nncf"),
    "tensorrt": ("tensorrt", "cuda"),
}
#: import name -> extra
PROVIDED_BY: dict[str, str] = {mod: extra for extra, mods in EXTRAS.items() for mod in mods}

#: the smallest install that brings each extra; torch's CPU build first (README: a bare torch
#: requirement pulls a multi-GB CUDA build), matplotlib alone rather than all of [train]
INSTALL: dict[str, str] = {
    "train": "pip install torch==2.13.0 'cmkd-edge[train]'",
    "plot": "pip install 'cmkd-edge[plot]' (or just pip install matplotlib)",
    "openvino": "pip install 'cmkd-edge[openvino]'",
    "tensorrt": "pip install 'cmkd-edge[tensorrt]' on the Jetson / NVIDIA GPU machine",
}


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
                                   f"(the [{extra}] extra)", INSTALL[extra])


def require(what: str, *extras: str, modules: Iterable[str] | None = None) -> None:
    """Raise one clear error if a module of ``extras`` (or the given ``modules``) is missing.

    Args:
        what: what needs it, as the user typed it (``"train-teacher"``, ``"profile --plot"``).
        extras: extra names of :data:`EXTRAS`; every module of each is required.
        modules: instead of whole extras, only these import names (each mapped to its extra).

    Raises:
        BackendUnavailableError: names the missing modules, the extra and the install command.
    """
    wanted = list(modules) if modules is not None else [m for e in extras for m in EXTRAS[e]]
    for extra in dict.fromkeys(PROVIDED_BY[m] for m in wanted):
        missing = [m for m in wanted if PROVIDED_BY[m] == extra and not installed(m)]
        if missing:
            raise _error(what, missing, extra)


def missing_extra_error(exc: ImportError, what: str) -> BackendUnavailableError | None:
    """The one-line error for an ImportError of an optional package, or None for anything else."""
    root = (getattr(exc, "name", None) or "").partition(".")[0]
    extra = PROVIDED_BY.get(root)
    return None if extra is None else _error(what, [root], extra)
