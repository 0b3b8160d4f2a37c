"""Latency reports (design.md, "Latency report"): one schema for every backend and precision.

What is timed, and why apart (users' top complaint is tools disagreeing on latency):

* ``cold_start``: opening the runner (model load/compile) and the first inference, measured once
  per report on a fresh Classifier. In-process: shared libraries are already imported, and the
  bundle's sha256 verification (done once before) is reported as ``verify_ms``.
* ``model_only``: the backend call alone on already validated float32 input
  (``Runner.infer`` without re-checking), i.e. what benchmark_app / trtexec / perf_test measure.
* ``end_to_end``: ``Classifier.predict`` on raw input: validation + dtype cast + backend call +
  softmax/sigmoid, i.e. what an application sees.

Both timed phases run ``warmup`` untimed calls first, then ``iterations`` timed calls with
``time.perf_counter_ns``. Percentiles use numpy's linear interpolation. ``peak_rss_mb`` is the
process's peak resident set so far (``VmHWM`` / ``resource.getrusage``; stdlib, no psutil), which
is monotonic: in ``--compare`` runs it includes everything profiled before.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cmkd_edge.errors import ConfigError

from .backends import FORMATS, available, available_backends
from .bundle import Bundle, open_bundle
from .classifier import Classifier
from .device import device_info

SCHEMA = "cmkd-edge/latency-report"
SCHEMA_VERSION = 1
STAT_KEYS = ("min_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms",
             "throughput_items_per_s")


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    Linux: ``VmHWM`` of /proc/self/status, because ``ru_maxrss`` survives ``exec`` and so reports
    the *parent's* peak for a process started from a big one (a benchmark driver, a test runner).
    Elsewhere ``resource.getrusage`` (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def latency_stats(samples_ms: np.ndarray, batch: int) -> dict[str, float]:
    """min/mean/std/p50/p90/p95/p99/max in ms and items/s (= batch / mean latency)."""
    s = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p95, p99 = np.percentile(s, [50, 90, 95, 99])
    return {"min_ms": float(s.min()), "mean_ms": float(s.mean()), "std_ms": float(s.std()),
            "p50_ms": float(p50), "p90_ms": float(p90), "p95_ms": float(p95), "p99_ms": float(p99),
            "max_ms": float(s.max()), "throughput_items_per_s": float(batch * 1000.0 / s.mean())}


@dataclass
class LatencyReport:
    """One (artifact, backend, batch) measurement. ``to_dict()`` is the JSON schema."""

    backend: str
    precision: str
    artifact: str
    format: str
    threads: int | None
    batch: int
    input_shape: list[int]
    cold_start: dict[str, float]
    warmup: int
    iterations: int
    model_only: dict[str, float]
    end_to_end: dict[str, float]
    peak_rss_mb: float
    accuracy: dict[str, Any] | None
    device: dict[str, Any]
    command: str
    versions: dict[str, str]
    bundle: str
    runner: dict[str, Any] = field(default_factory=dict)
    model_only_samples: np.ndarray | None = field(default=None, repr=False)
    end_to_end_samples: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("model_only_samples"), d.pop("end_to_end_samples")
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **d}


def synthetic_input(clf: Classifier, batch: int, seed: int = 0) -> np.ndarray:
    """Raw input of the manifest's shape, uniform within ``expected_range`` (no units warning)."""
    spec = clf.manifest.input
    lo, hi = spec.expected_range or (0.0, 1.0)
    if spec.units == "reflectance_x1e4" and hi <= 1.5:
        hi = 10000.0
    shape = (batch, spec.channels, int(spec.shape[2] or 64), int(spec.shape[3] or 64))
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(np.float32)


def _time(fn: Any, arg: np.ndarray, warmup: int, iterations: int) -> np.ndarray:
    for _ in range(warmup):
        fn(arg)
    out = np.empty(iterations, dtype=np.float64)
    clock = time.perf_counter_ns
    for i in range(iterations):
        t = clock()
        fn(arg)
        out[i] = (clock() - t) / 1e6
    return out


def _versions(backend: str) -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    for dist in ("cmkd-edge", backend):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def profile_one(bundle: Bundle, backend: str, artifact: str | None, batch: int, *,
                precision: str = "auto", warmup: int = 10, iterations: int = 200,
                threads: int | None = None, rebuild: bool = False, command: str | None = None,
                verify_ms: float = 0.0) -> LatencyReport:
    """Profile one artifact on one backend at one batch size (fresh Classifier: cold start).

    ``artifact=None`` lets ``Classifier.open`` choose (``backend``/``precision`` filter, and an
    artifact that fails to load is skipped as usual) inside the timed load. Why not choose first and
    open afterwards: choosing by opening would load the model twice, and the reported cold start
    would be a warm second load (an OpenVINO compile or TensorRT rebuild already done).
    """
    if warmup < 0 or iterations < 1 or batch < 1:
        raise ConfigError(f"need warmup >= 0, iterations >= 1, batch >= 1 (got {warmup}, {iterations}, {batch})")
    t0 = time.perf_counter_ns()
    clf = Classifier.open(bundle, backend=backend, precision=precision, threads=threads,
                          rebuild=rebuild, artifact=artifact)
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    with clf:
        x = synthetic_input(clf, batch)
        t1 = time.perf_counter_ns()
        clf.predict(x)
        first_ms = (time.perf_counter_ns() - t1) / 1e6
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        model = _time(clf.infer_logits, x32, warmup, iterations)
        e2e = _time(clf.predict, x, warmup, iterations)
        a = clf.artifact
        return LatencyReport(
            backend=clf.backend, precision=a.precision, artifact=a.id, format=a.format,
            threads=threads, batch=batch, input_shape=list(x.shape),
            cold_start={"verify_ms": verify_ms, "load_ms": load_ms, "first_inference_ms": first_ms,
                        "total_ms": load_ms + first_ms},
            warmup=warmup, iterations=iterations, model_only=latency_stats(model, batch),
            end_to_end=latency_stats(e2e, batch), peak_rss_mb=peak_rss_mb(), accuracy=a.accuracy,
            device=device_info(), command=command or shlex.join(sys.argv), versions=_versions(clf.backend),
            bundle=str(bundle.source), runner=clf.describe(), model_only_samples=model,
            end_to_end_samples=e2e)


def runnable(bundle: Bundle) -> list[tuple[str, str]]:
    """(backend, artifact id) for every artifact x backend pair this device can run."""
    out = []
    for a in bundle.manifest.artifacts:
        for b in available_backends():
            if a.format in FORMATS[b] and (b != "tensorrt" or a.format == "tensorrt-plan"):
                out.append((b, a.id))
    return out


def profile_bundle(bundle: str | os.PathLike[str] | Bundle, backend: str = "auto",
                   precision: str = "auto", batches: tuple[int, ...] = (1,), warmup: int = 10,
                   iterations: int = 200, threads: int | None = None, compare: bool = False,
                   rebuild: bool = False, command: str | None = None) -> list[LatencyReport]:
    """Profile the artifact ``Classifier.open`` would pick, or (``compare``) every runnable one."""
    t0 = time.perf_counter_ns()
    b = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    verify_ms = (time.perf_counter_ns() - t0) / 1e6
    if compare:
        pairs = [(be, aid) for be, aid in runnable(b)
                 if (backend == "auto" or be == backend)
                 and (precision == "auto" or b.manifest.artifact(aid).precision == precision)]
        if not pairs:
            raise ConfigError(f"no artifact runnable here for backend {backend!r} precision {precision!r}")
        return [profile_one(b, be, aid, n, warmup=warmup, iterations=iterations, threads=threads,
                            rebuild=rebuild, command=command, verify_ms=verify_ms)
                for be, aid in pairs for n in batches]
    # the first report's (timed, single) open makes the choice; later batch sizes reuse it
    reports: list[LatencyReport] = []
    for n in batches:
        be, aid, prec = ((backend, None, precision) if not reports
                         else (reports[0].backend, reports[0].artifact, "auto"))
        reports.append(profile_one(b, be, aid, n, precision=prec, warmup=warmup,
                                   iterations=iterations, threads=threads, rebuild=rebuild,
                                   command=command, verify_ms=verify_ms))
    return reports


# -- writers -------------------------------------------------------------------------------------
def write_json(reports: list[LatencyReport], path: str | os.PathLike[str]) -> None:
    from cmkd_edge.fsutil import atomic_write_json

    atomic_write_json(path, {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
                             "reports": [r.to_dict() for r in reports]})


CSV_COLUMNS = ["backend", "precision", "artifact", "format", "threads", "batch", "warmup",
               "iterations", "cold_start_ms", *(f"model_only_{k}" for k in STAT_KEYS),
               *(f"end_to_end_{k}" for k in STAT_KEYS), "peak_rss_mb", "accuracy", "cpu", "command"]


def write_csv(reports: list[LatencyReport], path: str | os.PathLike[str]) -> None:
    """One row per report with the flattened stats (same numbers as the JSON)."""
    import io

    from cmkd_edge.fsutil import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    w.writeheader()
    for r in reports:
        row = {k: getattr(r, k) for k in CSV_COLUMNS[:8]}
        row.update({f"model_only_{k}": r.model_only[k] for k in STAT_KEYS})
        row.update({f"end_to_end_{k}": r.end_to_end[k] for k in STAT_KEYS})
        row.update(cold_start_ms=r.cold_start["total_ms"], peak_rss_mb=r.peak_rss_mb,
                   accuracy=json.dumps(r.accuracy) if r.accuracy else "",
                   cpu=r.device["cpu"]["model"], command=r.command)
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())


def render_table(reports: list[LatencyReport]) -> Any:
    """A rich Table: one row per report, p50/p95/p99 model-only and end-to-end, items/s, accuracy."""
    from rich.table import Table

    t = Table(title="cmkd-edge latency (ms)")
    for col in ("backend", "precision", "artifact", "batch", "cold", "model p50", "e2e p50",
                "e2e p95", "e2e p99", "items/s", "RSS MiB", "accuracy"):
        t.add_column(col, justify="right" if col not in ("backend", "precision", "artifact") else "left")
    for r in reports:
        acc = next((f"{k}={v:.3f}" for k, v in (r.accuracy or {}).items() if isinstance(v, float)), "-")
        t.add_row(r.backend, r.precision, r.artifact, str(r.batch), f"{r.cold_start['total_ms']:.0f}",
                  f"{r.model_only['p50_ms']:.3f}", f"{r.end_to_end['p50_ms']:.3f}",
                  f"{r.end_to_end['p95_ms']:.3f}", f"{r.end_to_end['p99_ms']:.3f}",
                  f"{r.end_to_end['throughput_items_per_s']:.0f}", f"{r.peak_rss_mb:.0f}", acc)
    return t


def plot_reports(reports: list[LatencyReport], path: str | os.PathLike[str]) -> Path:
    """Latency distribution per backend/precision/batch (box plot) and accuracy vs p50 latency."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib, which is not installed",
                          "pip install 'cmkd-edge[train]' or pip install matplotlib") from exc
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.5))
    labels = [f"{r.backend} {r.artifact} b{r.batch}" for r in reports]
    data = [r.end_to_end_samples if r.end_to_end_samples is not None else [r.end_to_end["p50_ms"]]
            for r in reports]
    ax1.boxplot(data, showfliers=False)
    # why rotated: one box per artifact x backend x batch; horizontal labels overlap beyond a few
    ax1.set_xticks(range(1, len(labels) + 1), labels, fontsize=7, rotation=40, ha="right")
    ax1.set_ylabel("end-to-end latency per call (ms)")
    ax1.set_title("latency distribution")
    markers = {"fp32": "o", "fp16": "s", "int8": "^"}
    for r in reports:
        acc = next((v for v in (r.accuracy or {}).values() if isinstance(v, (int, float))), None)
        if acc is not None:
            # a legend, not text labels: artifacts of equal accuracy would print on top of each other
            ax2.scatter(r.end_to_end["p50_ms"] / r.batch, acc, marker=markers.get(r.precision, "o"),
                        label=f"{r.backend} {r.artifact} b{r.batch}")
    if ax2.collections:
        ax2.legend(fontsize=7, loc="best")
    ax2.set_xlabel("p50 latency per item (ms)")
    ax2.set_ylabel("accuracy (manifest)")
    ax2.set_title("accuracy vs latency" + ("" if any(r.accuracy for r in reports) else " (no accuracy in manifest)"))
    fig.tight_layout()
    from cmkd_edge.fsutil import atomic_open

    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, dpi=120, format="png")
    plt.close(fig)
    return Path(path)


__all__ = ["LatencyReport", "profile_bundle", "profile_one", "runnable", "latency_stats",
           "peak_rss_mb", "write_json", "write_csv", "render_table", "plot_reports", "available"]
