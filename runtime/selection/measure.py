"""Measure every candidate of a bundle through the runtime, and cache what was measured.

Nothing is re-implemented here: accuracy is :func:`cmkd_edge.runtime.evaluate.evaluate_bundle`
(every artifact x backend through ``Classifier``, paired with FP32) and latency and memory are
:func:`cmkd_edge.runtime.profiler.profile_one` (cold start, end-to-end percentiles, RSS added) -
the code behind ``evaluate`` and ``profile``.

Cache (``<cache root>/select/``, JSON, written atomically): a latency entry is keyed by the
artifact's files (their sha256), the backend, threads, batch, warm-up and iteration counts and the
device (CPU model, flags, cores, GPU, backend versions: ``speed_probe.device_key``); an accuracy
entry by the bundle's files and artifact ids, the data's identity (a file's sha256, or a folder's
listing of names, sizes and modification times, or the synthetic generator's name and seed) and
the split. A second ``select`` with another budget therefore reads no data and times nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cmkd_edge.errors import BackendUnavailableError, BundleError
from cmkd_edge.fsutil import atomic_write_json, sha256_file

from ..contract.bundle import Bundle, cache_root
from ..speed_probe import bundle_key, device_key

log = logging.getLogger("cmkd_edge.runtime")
CACHE_VERSION = 1
Samples = Callable[[], tuple[np.ndarray, np.ndarray, dict[str, Any]]]


def _digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def select_cache(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache root>/select`` (beside ``bundles/``, ``speed/`` and ``tensorrt/``)."""
    return cache_root(cache_dir).parent / "select"


def data_identity(data: str | None, bundle: Bundle) -> dict[str, Any]:
    """What the scored samples are, without reading them: the data's path and content identity.

    ``data`` None is the training data the bundle records (``provenance.data``), as ``evaluate``.
    """
    rec = bundle.manifest.provenance.data
    path = data if data is not None else (rec.path if rec is not None else None)
    seed = rec.seed if rec is not None else None
    if path is None or str(path).startswith("synthetic"):
        return {"synthetic": path or "synthetic", "seed": seed}
    p = Path(path)
    if p.is_file():
        return {"file": str(p.resolve()), "sha256": sha256_file(p), "seed": seed}
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"dir": str(p.resolve()), "listing": h.hexdigest(), "seed": seed}
    return {"missing": str(path)}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("version") == CACHE_VERSION else None


def _write(path: Path, doc: dict[str, Any]) -> None:
    try:
        atomic_write_json(path, {"version": CACHE_VERSION, **doc})
    except OSError as exc:  # a read-only cache only costs a re-measurement next time
        log.warning("could not cache a select measurement at %s: %s", path, exc)


def accuracy(b: Bundle, samples: Samples, *, data: str | None, split: str, use_cache: bool = True,
             cache_dir: str | os.PathLike[str] | None = None,
             progress: Callable[[str], None] | None = None) -> tuple[dict[str, Any], bool]:
    """``evaluate_bundle``'s document for ``b`` on ``split`` (no latency), and whether it was cached.

    ``samples`` is called only on a cache miss (reading a dataset is the slow part of a re-run).
    """
    from ..evaluate import evaluate_bundle

    dev = device_key(None, None)
    key = _digest({"bundle": bundle_key(b), "data": data_identity(data, b), "split": split,
                   "backends": dev["backends"], "cpu": dev["cpu"]})
    path = select_cache(cache_dir) / "accuracy" / f"{key[:40]}.json"
    doc = _read(path) if use_cache else None
    if doc is not None:
        return doc["report"], True
    x, labels, info = samples()
    report = evaluate_bundle(b, x, labels, split=split, data=str(info.get("data")),
                             latency_iterations=0, progress=progress)
    report.update(split_table=info.get("split_table"), synthetic=info.get("synthetic"))
    _write(path, {"key": key, "report": report})
    return report, False


def artifact_files(b: Bundle, artifact_id: str) -> dict[str, str]:
    """The artifact's files with their sha256 (from the verified manifest)."""
    m = b.manifest
    return {rel: m.files[rel] for rel in m.artifact(artifact_id).files if rel in m.files}


def latency(b: Bundle, backend: str, artifact_id: str, *, threads: int, batch: int, warmup: int,
            iterations: int, use_cache: bool = True, cache_dir: str | os.PathLike[str] | None = None,
            command: str | None = None) -> tuple[dict[str, Any], bool]:
    """``profile_one``'s latency report (the ``profile --json`` schema) for one candidate, and
    whether it came from the cache.

    Raises:
        BundleError, BackendUnavailableError: the artifact cannot be opened here (the caller
            records a skip with the reason).
    """
    from ..profiler import profile_one

    a = b.manifest.artifact(artifact_id)
    key = _digest({"files": artifact_files(b, artifact_id), "format": a.format, "precision": a.precision,
                   "backend": backend, "threads": threads, "batch": batch, "warmup": warmup,
                   "iterations": iterations, "device": device_key(threads, None)})
    path = select_cache(cache_dir) / "latency" / f"{key[:40]}.json"
    doc = _read(path) if use_cache else None
    if doc is not None:
        return doc["report"], True
    rep = profile_one(b, backend, artifact_id, batch, warmup=warmup, iterations=iterations,
                      threads=threads, command=command).to_dict()
    _write(path, {"key": key, "report": rep})
    return rep, False


#: what makes a candidate unmeasurable here: recorded as a skip with the reason, not a failure
UNRUNNABLE = (BundleError, BackendUnavailableError)
