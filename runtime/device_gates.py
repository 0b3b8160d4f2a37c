"""Gate verdicts measured on a device class, kept beside the bundle cache (never in the bundle).

A bundle's accuracy gate ran where it was quantized. ``cmkd-edge evaluate BUNDLE --regate`` runs
the same gate on this device and records each artifact's verdict here, per device class (the
nearest named profile, e.g. ``aarch64-dotprod``); ``Classifier.open(precision="auto")`` then never
picks an artifact that failed on this device class, and says when the one it picks was gated
elsewhere only. The checksummed bundle is never touched: the verdicts live in the cache, keyed by the
bundle's content hash.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .contract.bundle import Bundle, cache_root


def device_class(here: Any = None) -> str:
    """A device's class (``here``, a profile; default this machine): the named profile whose rules
    it follows (the machine name otherwise)."""
    from .device_profiles import host_profile, nearest_builtin

    h = here or host_profile()
    return nearest_builtin(h.machine, h.features) or h.machine


def _path(bundle: Bundle, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    from .speed_probe import bundle_key

    return cache_root(cache_dir).parent / "gates" / f"{bundle_key(bundle)[:24]}.json"


def verdicts(bundle: Bundle, cls: str | None = None,
             cache_dir: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{"backend:artifact": verdict}`` recorded for ``cls`` (default: this device class)."""
    try:
        doc = json.loads(_path(bundle, cache_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return dict(doc.get("classes", {}).get(cls or device_class(), {}))


def record(bundle: Bundle, found: dict[str, dict[str, Any]],
           cache_dir: str | os.PathLike[str] | None = None, cls: str | None = None) -> Path:
    """Add this device class's (or ``cls``'s) verdicts (``{"backend:artifact": verdict}``), atomically."""
    from cmkd_edge.fsutil import atomic_write_json

    path = _path(bundle, cache_dir)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = {"schema": "cmkd-edge.device-gates/1", "classes": {}}
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cls = cls or device_class()
    doc["classes"].setdefault(cls, {}).update({k: {**v, "when": stamp} for k, v in found.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, doc)
    return path


def screen(bundle: Bundle, pairs: list[tuple[str, Any]], cache_dir: str | os.PathLike[str] | None = None,
           here: Any = None) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Drop the (backend, artifact) pairs whose gate failed on this device class; move to the end,
    as ungated (``gate_passed`` None in the copy returned), the INT8 ones whose gate was run on
    another device class and whose backend's device rule says it does not carry over here (OpenVINO
    INT8 gated on x86, on an ARM CPU) unless ``--regate`` passed them here; say what was dropped,
    what was demoted, and which remaining quantized ones were gated only where they were made.
    ``here``: the device as a profile (default: this machine)."""
    from dataclasses import replace

    from .device_profiles import artifact_target, gate_holds, host_profile

    me = here or host_profile()
    cls = device_class(me)
    found = verdicts(bundle, cls, cache_dir=cache_dir)
    kept, demoted, failed, elsewhere, held = [], [], [], [], []
    for be, a in pairs:
        v = found.get(f"{be}:{a.id}")
        if v is not None and not v.get("passed", True):
            failed.append(f"{be}:{a.id} ({v.get('reason', 'failed')})")
            continue
        if v is None and a.precision == "int8" and a.gate_passed:
            holds, why = gate_holds(be, artifact_target(bundle.manifest, a), me)
            if not holds:
                held.append(f"{be}:{a.id} ({why})")
                demoted.append((be, replace(a, gate_passed=None)))
                continue
        if a.precision != "fp32" and v is None:
            elsewhere.append(f"{be}:{a.id}")
        kept.append((be, a))
    note: dict[str, Any] = {"device_class": cls}
    if failed:
        note["failed_here"] = failed
    if held:
        note["gate_does_not_hold_here"] = held
    if elsewhere:
        note["gated_elsewhere"] = elsewhere
    return kept + demoted, note
