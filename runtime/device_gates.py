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

from .bundle import Bundle, cache_root


def device_class() -> str:
    """This device's class: the named profile whose rules it follows (the machine name otherwise)."""
    from .device_profiles import host_profile, nearest_builtin

    h = host_profile()
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
           cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Add this device class's verdicts (``{"backend:artifact": verdict}``), atomically."""
    from cmkd_edge.fsutil import atomic_write_json

    path = _path(bundle, cache_dir)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = {"schema": "cmkd-edge.device-gates/1", "classes": {}}
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cls = device_class()
    doc["classes"].setdefault(cls, {}).update({k: {**v, "when": stamp} for k, v in found.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, doc)
    return path


def screen(bundle: Bundle, pairs: list[tuple[str, Any]], cache_dir: str | os.PathLike[str] | None = None
           ) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Drop the (backend, artifact) pairs whose gate failed on this device class; say what was
    dropped and which remaining quantized ones were gated only where they were made."""
    here = verdicts(bundle, cache_dir=cache_dir)
    kept, failed, elsewhere = [], [], []
    for be, a in pairs:
        v = here.get(f"{be}:{a.id}")
        if v is not None and not v.get("passed", True):
            failed.append(f"{be}:{a.id} ({v.get('reason', 'failed')})")
            continue
        if a.precision != "fp32" and v is None:
            elsewhere.append(f"{be}:{a.id}")
        kept.append((be, a))
    note: dict[str, Any] = {"device_class": device_class()}
    if failed:
        note["failed_here"] = failed
    if elsewhere:
        note["gated_elsewhere"] = elsewhere
    return kept, note
