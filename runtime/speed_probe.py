"""``precision="auto"`` by measured speed: a short batch-1 probe of the gated artifacts, cached.

Why measure: which artifact is fastest depends on the device, not on its precision. On an AVX2 CPU
without VNNI, ONNX Runtime's S8S8 INT8 is slower than FP32 (field notes: 0.94x) while U8S8 is 1.7x;
a partly-float INT8 (NNCF accuracy control) can lose to an FP32 IR; FP16 gains nothing on a CPU. A
fixed order (``classifier._rank``) guesses; a probe knows. The fixed order stays the fallback when
probing is disabled (``probe=False`` or ``CMKD_EDGE_SPEED_PROBE=0``) or impossible (fewer than two
eligible candidates open here).

Eligible: an artifact whose own accuracy gate passed (``gate_passed`` true) or FP32 (the reference
needs no gate). An INT8/FP16 artifact without a passed gate is never chosen for being fast.

The probe opens each candidate, feeds the same in-range synthetic batch of one, warms up, then times
``rounds`` interleaved rounds of ``calls`` calls per candidate (interleaving keeps a noisy neighbour
from favouring whichever ran first) and ranks by the median of the per-round medians. The result is
cached as JSON under ``<cache root>/speed/`` (beside ``bundles/`` and ``tensorrt/``), keyed by the
bundle's file hashes and a device fingerprint (CPU model, flags, cores, backend versions, threads),
written atomically, so a device probes a bundle once. numpy and stdlib only (the runtime never imports torch).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cmkd_edge.errors import BackendUnavailableError, BundleError
from cmkd_edge.fsutil import atomic_write_json

from .backends import backend_spec, libraries
from .contract.bundle import Bundle, cache_root
from .contract.manifest import Artifact

log = logging.getLogger("cmkd_edge.runtime")

SCHEMA = "cmkd-edge/speed-probe"
ENV_SWITCH = "CMKD_EDGE_SPEED_PROBE"
TIE = 0.05  # relative latency difference below which the fixed order decides


def probing_enabled(probe: bool | None) -> bool:
    """``probe`` if given, else on unless ``$CMKD_EDGE_SPEED_PROBE`` is 0/false/no/off."""
    if probe is not None:
        return probe
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def eligible(a: Artifact) -> bool:
    """Only artifacts whose accuracy is vouched for may win on speed: FP32, or a passed gate."""
    return a.precision == "fp32" or a.gate_passed is True


def device_key(threads: int | None, device: str | None) -> dict[str, Any]:
    """What makes a timing valid on another run: the CPU, the GPU, backend versions, threads."""
    from .backends.device import cpu_info, gpu_name, package_versions

    cpu = cpu_info()
    return {"cpu": cpu["model"], "machine": cpu["machine"], "cores": cpu["logical_cores"],
            "flags": cpu["flags_present"], "gpu": gpu_name(),
            "backends": package_versions(libraries()), "threads": threads, "device": device}


def bundle_key(bundle: Bundle) -> str:
    """sha256 over the manifest's file hashes and artifact ids: any changed artifact re-probes."""
    m = bundle.manifest
    doc = {"files": dict(sorted(m.files.items())), "artifacts": [a.id for a in m.artifacts]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def cache_path(bundle: Bundle, dev: dict[str, Any],
               cache_dir: str | os.PathLike[str] | None) -> Path:
    dev_hash = hashlib.sha256(json.dumps(dev, sort_keys=True).encode()).hexdigest()
    return cache_root(cache_dir).parent / "speed" / f"{bundle_key(bundle)[:20]}-{dev_hash[:20]}.json"


def _load(path: Path, pairs: Sequence[tuple[str, Artifact]]) -> dict[str, Any] | None:
    """A cached probe that covers exactly ``pairs``; anything else (corrupt, partial) is ignored."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    want = sorted(f"{b}:{a.id}" for b, a in pairs)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or doc.get("candidates") != want:
        return None
    return doc


def _time(pairs: Sequence[tuple[str, Artifact]], bundle: Bundle, *, threads: int | None,
          device: str | None, cache_dir: str | os.PathLike[str] | None, rebuild: bool,
          warmup: int, rounds: int, calls: int, budget_s: float) -> tuple[dict[str, float], dict[str, str]]:
    """Median batch-1 latency (ms) per ``backend:artifact``; candidates that fail to open are
    reported in the second dict with the reason (they are simply not ranked)."""
    from .contract.units import synthetic_batch

    inp = bundle.manifest.input
    hw = tuple(int(v) if v else 32 for v in inp.shape[2:])
    x = np.ascontiguousarray(synthetic_batch(inp.units, len(inp.band_names), hw, 1, seed=0,
                                             expected_range=inp.expected_range), dtype=np.float32)
    runners: dict[str, Any] = {}
    failed: dict[str, str] = {}
    try:
        for b, a in pairs:
            key = f"{b}:{a.id}"
            try:
                r = backend_spec(b).runner.for_artifact(bundle, a, threads=threads, device=device,
                                                        cache_dir=cache_dir, rebuild=rebuild)
                r.open()
            except (BackendUnavailableError, BundleError) as exc:
                failed[key] = exc.one_line()
                continue
            name = next(iter(r.input_specs()))
            runners[key] = (r, {name: x})
        for r, feed in runners.values():
            for _ in range(warmup):
                r.infer(feed, check=False)
        per: dict[str, list[float]] = {k: [] for k in runners}
        start = time.perf_counter()
        for i in range(rounds):
            for key, (r, feed) in runners.items():
                t = []
                for _ in range(calls):
                    s = time.perf_counter()
                    r.infer(feed, check=False)
                    t.append(time.perf_counter() - s)
                per[key].append(statistics.median(t) * 1e3)
            if i >= 2 and time.perf_counter() - start > budget_s:
                break  # a slow model: three rounds are enough to rank, the user is waiting
        return {k: statistics.median(v) for k, v in per.items()}, failed
    finally:
        for r, _ in runners.values():
            r.close()


def rank_by_speed(bundle: Bundle, pairs: list[tuple[str, Artifact]], *, threads: int | None = None,
                  device: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                  rebuild: bool = False, warmup: int = 5, rounds: int = 5, calls: int = 10,
                  budget_s: float = 3.0) -> tuple[list[tuple[str, Artifact]], dict[str, Any]]:
    """Reorder ``pairs`` (the fixed order, best first): eligible ones by measured speed, fastest
    first, then the rest in their fixed order. Returns the new order and the selection record.

    Never raises for a probe problem: the fixed order is kept and the record says why.
    """
    cands = [(b, a) for b, a in pairs if eligible(a)]
    record: dict[str, Any] = {"how": "fixed order", "probe": None}
    if len(cands) < 2:
        record["why"] = (f"only {len(cands)} gated/FP32 candidate(s) on this device: nothing to "
                         "measure; fixed order")
        return pairs, record
    dev = device_key(threads, device)
    path = cache_path(bundle, dev, cache_dir)
    doc = _load(path, cands)
    cached = doc is not None
    if doc is None:
        try:
            ms, failed = _time(cands, bundle, threads=threads, device=device, cache_dir=cache_dir,
                               rebuild=rebuild, warmup=warmup, rounds=rounds, calls=calls,
                               budget_s=budget_s)
        except Exception as exc:  # noqa: BLE001 - a backend error mid-probe must not stop classify
            record["why"] = f"speed probe failed ({type(exc).__name__}: {str(exc)[:120]}); fixed order"
            log.warning("%s", record["why"])
            return pairs, record
        if len(ms) < 2:
            record["why"] = "fewer than two candidates could be opened for the probe; fixed order"
            return pairs, record
        doc = {"schema": SCHEMA, "version": 1, "candidates": sorted(f"{b}:{a.id}" for b, a in cands),
               "ms_p50_batch1": ms, "failed": failed, "device": dev,
               "bundle": bundle_key(bundle), "created": datetime.now(timezone.utc).isoformat(),
               "method": f"{warmup} warm-up calls, up to {rounds} interleaved rounds x {calls} "
                         "calls at batch 1, median of round medians"}
        try:
            atomic_write_json(path, doc)
        except OSError as exc:  # a read-only cache only costs a re-probe next time
            log.warning("could not cache the speed probe at %s: %s", path, exc)
    ms = doc["ms_p50_batch1"]
    by_speed = sorted((p for p in cands if f"{p[0]}:{p[1].id}" in ms),
                      key=lambda p: ms[f"{p[0]}:{p[1].id}"])
    # within TIE of the fastest is a tie on a noisy machine: the fixed order (gated INT8, native
    # artifact) decides among those, so two copies of one model do not swap from run to run
    fastest = ms[f"{by_speed[0][0]}:{by_speed[0][1].id}"]
    ties = [p for p in pairs if p in by_speed and ms[f"{p[0]}:{p[1].id}"] <= fastest * (1 + TIE)]
    measured = ties + [p for p in by_speed if p not in ties]
    rest = [p for p in pairs if p not in measured]
    best = measured[0]
    fixed_first = pairs[0]
    key = f"{best[0]}:{best[1].id}"
    tie = ms[key] > min(ms.values())
    others = ", ".join(f"{k} {v:.3f} ms" for k, v in sorted(ms.items(), key=lambda kv: kv[1])
                       if k != key)
    record.update(how="measured", cached=cached, cache=str(path), ms_p50_batch1=ms,
                  failed=doc.get("failed") or {},
                  why=((f"within {TIE:.0%} of the fastest gated artifact measured on this device, "
                        "so the fixed order's pick: " if tie else
                        "fastest gated artifact measured on this device: ")
                       + f"{key} {ms[key]:.3f} ms at batch 1 (vs {others})"
                       + (" [cached probe]" if cached else "")
                       + ("" if best == fixed_first else
                          f"; the fixed order would have run {fixed_first[0]}:{fixed_first[1].id}")))
    return measured + rest, record
