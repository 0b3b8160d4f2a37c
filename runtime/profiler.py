"""Latency reports (design.md, "Latency report"): one schema for every backend and precision.

What is timed, and why apart (users' top complaint is tools disagreeing on latency):

* ``cold_start``: opening the runner (model load/compile) and the first inference, measured once
  per report on a fresh Classifier. In-process: shared libraries are already imported, and the
  bundle's sha256 verification (done once before) is reported as ``verify_ms``.
* ``model_only``: the backend call alone on already validated float32 input
  (``Runner.infer`` without re-checking), i.e. what benchmark_app / trtexec / perf_test measure.
* ``end_to_end``: ``Classifier.predict`` on raw input: validation + dtype cast + backend call +
  softmax/sigmoid, i.e. what an application sees.

Both are timed in one loop, from the same calls: ``warmup`` untimed ``predict`` calls, then
``iterations`` timed ones, each timed whole (end-to-end) while a probe around the classifier's own
model call inside it times that call (model-only). Why nested rather than two loops one after the
other: two loops see different cache, clock and thermal states, and end-to-end p50 came out *below*
model-only p50 (OpenVINO FP32 batch 8: 2.373 vs 2.568 ms); nested, a call's model part can never
exceed the call. Percentiles use numpy's linear interpolation; ``time.perf_counter_ns``.

Memory, per row (per artifact x backend x batch): ``rss.baseline_mb`` is the resident set just
before the row opens its model, ``rss.peak_mb`` the peak while the row runs and ``rss.added_mb`` the
difference: what this artifact costs on top of what the process already held. On Linux the kernel's
peak counter is reset at the start of each row (``/proc/self/clear_refs``), so the peak is the row's
own; where that is not possible ``rss.method`` says so and ``added_mb`` is None (not measured)
instead of a process-wide peak that only grows down a ``--compare`` table. ``peak_rss_mb`` (kept for
readers of schema 1) is ``rss.peak_mb``.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cmkd_edge.errors import ConfigError

from .backends import FORMATS, available, available_backends, backend_spec
from .backends.device import device_info, package_versions
from .classifier import Classifier
from .contract.bundle import Bundle, open_bundle
from .contract.records import Accuracy
from .contract.units import synthetic_batch

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
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def rss_now_mb() -> float | None:
    """Current resident set size in MiB (``VmRSS``), or None where /proc is absent."""
    return _proc_status_mb("VmRSS")


def _proc_status_mb(key: str) -> float | None:
    """A kB field of /proc/self/status in MiB, or None where /proc is absent."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS counter (Linux >= 4.0: write 5 to clear_refs); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class RowMemory:
    """Peak RSS of one profile row over the RSS it started with (see the module docstring)."""

    def __init__(self) -> None:
        self.per_row = reset_peak_rss()
        self.baseline = rss_now_mb()

    def result(self) -> dict[str, Any]:
        peak = peak_rss_mb()
        if self.per_row and self.baseline is not None:
            return {"baseline_mb": self.baseline, "peak_mb": peak, "added_mb": max(0.0, peak - self.baseline),
                    "method": "row peak (VmHWM reset at row start) minus RSS at row start"}
        return {"baseline_mb": self.baseline, "peak_mb": peak, "added_mb": None,
                "method": "process peak so far (this OS cannot reset it); per-row RSS not measured"}


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
    accuracy: Accuracy | None
    device: dict[str, Any]
    command: str
    versions: dict[str, str]
    bundle: str
    runner: dict[str, Any] = field(default_factory=dict)
    rss: dict[str, Any] = field(default_factory=dict)
    model_only_samples: np.ndarray | None = field(default=None, repr=False)
    end_to_end_samples: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("model_only_samples"), d.pop("end_to_end_samples")
        d["accuracy"] = None if self.accuracy is None else self.accuracy.to_dict()
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **d}


def synthetic_input(clf: Classifier, batch: int, seed: int = 0) -> np.ndarray:
    """Raw input of the manifest's shape, uniform within ``expected_range`` (no units warning)."""
    spec = clf.manifest.input
    return synthetic_batch(spec.units, spec.channels, (int(spec.shape[2] or 64), int(spec.shape[3] or 64)),
                           batch, seed, expected_range=spec.expected_range or (0.0, 1.0))


def _time_nested(clf: Classifier, x: np.ndarray, warmup: int, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-call ms of ``clf.predict(x)`` (end-to-end) and of the model call inside each of them.

    The probe is an instance attribute over ``infer_logits`` (the call ``predict`` makes after
    validation), so the real model call runs, timed where it happens. If ``predict`` ever stops
    going through ``infer_logits`` the probe sees no call and model-only is timed right after each
    end-to-end call instead, in the same loop.
    """
    clock = time.perf_counter_ns
    inner = clf.infer_logits
    spent: list[int] = []

    def probe(v: np.ndarray) -> np.ndarray:
        t = clock()
        try:
            return inner(v)
        finally:
            spent.append(clock() - t)

    x32 = np.ascontiguousarray(x, dtype=np.float32)
    e2e = np.empty(iterations, dtype=np.float64)
    model = np.empty(iterations, dtype=np.float64)
    clf.infer_logits = probe  # type: ignore[method-assign]
    try:
        for _ in range(warmup):
            clf.predict(x)
        for i in range(iterations):
            spent.clear()
            t = clock()
            clf.predict(x)
            e2e[i] = (clock() - t) / 1e6
            if spent:
                model[i] = sum(spent) / 1e6
            else:  # predict did not use the probe: time the model call on its own, next to it
                t = clock()
                inner(x32)
                model[i] = (clock() - t) / 1e6
    finally:
        del clf.infer_logits  # back to the class's method
    return model, e2e


def recorded_accuracy(bundle: Bundle, artifact_id: str) -> Accuracy | None:
    """The artifact's accuracy as the manifest records it, with the split and n it was measured on.

    ``n`` comes from the quantization gate record of that split (every gate of a bundle scores the
    same recorded validation samples); None when the manifest does not say.
    """
    m = bundle.manifest
    acc = m.artifact(artifact_id).accuracy
    if acc is None or acc.metric is None:
        return None
    return acc if acc.n is not None else replace(acc, n=m.gate_n(acc.split))


def _versions(backend: str) -> dict[str, str]:
    return {"python": sys.version.split()[0], "numpy": np.__version__,
            **package_versions(("cmkd-edge", backend_spec(backend).library))}


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
    memory = RowMemory()
    t0 = time.perf_counter_ns()
    # probe=False: a speed probe would load every candidate first, and the reported cold start
    # would be a warm reload; profile measures, so it takes the fixed order (and --compare all)
    clf = Classifier.open(bundle, backend=backend, precision=precision, threads=threads,
                          rebuild=rebuild, artifact=artifact, probe=False)
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    with clf:
        x = synthetic_input(clf, batch)
        t1 = time.perf_counter_ns()
        clf.predict(x)
        first_ms = (time.perf_counter_ns() - t1) / 1e6
        model, e2e = _time_nested(clf, x, warmup, iterations)
        rss = memory.result()
        a = clf.artifact
        return LatencyReport(
            backend=clf.backend, precision=a.precision, artifact=a.id, format=a.format,
            threads=threads, batch=batch, input_shape=list(x.shape),
            cold_start={"verify_ms": verify_ms, "load_ms": load_ms, "first_inference_ms": first_ms,
                        "total_ms": load_ms + first_ms},
            warmup=warmup, iterations=iterations, model_only=latency_stats(model, batch),
            end_to_end=latency_stats(e2e, batch), peak_rss_mb=rss["peak_mb"],
            accuracy=recorded_accuracy(bundle, a.id),
            device=device_info(), command=command or shlex.join(sys.argv), versions=_versions(clf.backend),
            bundle=str(bundle.source), runner=clf.describe(), rss=rss, model_only_samples=model,
            end_to_end_samples=e2e)


def runnable(bundle: Bundle) -> list[tuple[str, str]]:
    """(backend, artifact id) for every artifact x backend pair this device can run."""
    out = []
    for a in bundle.manifest.artifacts:
        for b in available_backends():
            if a.format in FORMATS[b] and a.format not in backend_spec(b).build_formats:
                out.append((b, a.id))
    return out


def _why_not(name: str) -> str:
    """Why backend ``name`` cannot run here, and what would make it run (from its declaration)."""
    spec = backend_spec(name)
    if spec.installed() and spec.needs_gpu:
        return f"there is no NVIDIA GPU here; run it on a GPU machine ({spec.install_hint})"
    return f"{spec.library} is not installed; {spec.install_hint}"


def not_runnable(bundle: Bundle, backend: str = "auto", precision: str = "auto") -> list[dict[str, str]]:
    """The artifact x backend pairs ``--compare`` leaves out on this device, each with the reason.

    Why: a base install runs only the ONNX artifacts on ONNX Runtime; a comparison that silently
    had 4 rows instead of 12 looked complete.
    """
    out = []
    for a in bundle.manifest.artifacts:
        if precision != "auto" and a.precision != precision:
            continue
        for b in FORMATS:
            if (backend not in ("auto", b) or a.format not in FORMATS[b] or available(b)
                    or a.format in backend_spec(b).build_formats):
                continue
            out.append({"artifact": a.id, "backend": b, "why": _why_not(b)})
    return out


def profile_bundle(bundle: str | os.PathLike[str] | Bundle, backend: str = "auto",
                   precision: str = "auto", batches: tuple[int, ...] = (1,), warmup: int = 10,
                   iterations: int = 200, threads: int | None = None, compare: bool = False,
                   rebuild: bool = False, command: str | None = None,
                   on_skip: Callable[[list[dict[str, str]]], None] | None = None) -> list[LatencyReport]:
    """Profile the artifact ``Classifier.open`` would pick, or (``compare``) every runnable one.

    Args:
        on_skip: with ``compare``, called once before profiling starts with :func:`not_runnable`'s
            list when it is not empty (the CLI prints it; the JSON report carries it).
    """
    t0 = time.perf_counter_ns()
    b = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    verify_ms = (time.perf_counter_ns() - t0) / 1e6
    if compare:
        pairs = [(be, aid) for be, aid in runnable(b)
                 if (backend == "auto" or be == backend)
                 and (precision == "auto" or b.manifest.artifact(aid).precision == precision)]
        skipped = not_runnable(b, backend, precision)
        if skipped and on_skip is not None:
            on_skip(skipped)
        if not pairs:
            raise ConfigError(f"no artifact runnable here for backend {backend!r} precision {precision!r}",
                              skipped[0]["why"] if skipped else None)
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
def report_document(reports: list[LatencyReport], skipped: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The JSON document: schema, the reports, and (``--compare``) the pairs left out and why."""
    doc: dict[str, Any] = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
                           "reports": [r.to_dict() for r in reports]}
    if skipped:
        doc["skipped"] = skipped
    return doc


def write_json(reports: list[LatencyReport], path: str | os.PathLike[str],
               skipped: list[dict[str, str]] | None = None) -> None:
    from cmkd_edge.fsutil import atomic_write_json

    atomic_write_json(path, report_document(reports, skipped))


CSV_COLUMNS = ["backend", "precision", "artifact", "format", "threads", "batch", "warmup",
               "iterations", "cold_start_ms", *(f"model_only_{k}" for k in STAT_KEYS),
               *(f"end_to_end_{k}" for k in STAT_KEYS), "peak_rss_mb", "rss_baseline_mb", "rss_added_mb",
               "accuracy", "cpu", "command"]


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
                   rss_baseline_mb=r.rss.get("baseline_mb"), rss_added_mb=r.rss.get("added_mb"),
                   accuracy=json.dumps(r.accuracy.to_dict()) if r.accuracy else "",
                   cpu=r.device["cpu"]["model"], command=r.command)
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())


def top1_percent(acc: Accuracy | None) -> float | None:
    """The recorded top-1 in percent, or None. quantize and compile record percent (their drops are
    points); a value <= 1 is read as a fraction (hand-written or older manifests)."""
    if acc is None:
        return None
    v = acc.top1 if acc.top1 is not None else acc.micro_f1  # micro_f1: a multi-label gate's score
    if v is None:
        return None
    return float(v) * 100.0 if v <= 1.0 else float(v)


def accuracy_label(acc: Accuracy | None) -> str:
    """``top1 91.2% (val, n=40)``; ``not measured`` when the manifest records none for the artifact."""
    pct = top1_percent(acc)
    if acc is None or pct is None:
        return "not measured"
    where = f"{acc.split or 'split not recorded'}, " + (f"n={acc.n}" if acc.n is not None else "n not recorded")
    return f"{'top1' if acc.top1 is not None else 'micro-F1'} {pct:.1f}% ({where})"


def render_table(reports: list[LatencyReport]) -> Any:
    """A rich Table: one row per report; latencies per call in ms, RSS this row added, accuracy.

    Cells fold rather than end in an ellipsis, so a narrow terminal wraps a name instead of hiding it.
    """
    from rich.table import Table

    t = Table(title="cmkd-edge latency: ms per call (batch items per call); RSS added = row peak - row start")
    for col in ("backend", "precision", "artifact", "batch", "cold ms", "model p50", "e2e p50",
                "e2e p95", "e2e p99", "e2e ms/item", "items/s", "RSS added MiB", "accuracy (manifest)"):
        t.add_column(col, justify="right" if col not in ("backend", "precision", "artifact", "accuracy (manifest)")
                     else "left", overflow="fold")
    for r in reports:
        added = r.rss.get("added_mb")
        t.add_row(r.backend, r.precision, r.artifact, str(r.batch), f"{r.cold_start['total_ms']:.0f}",
                  f"{r.model_only['p50_ms']:.3f}", f"{r.end_to_end['p50_ms']:.3f}",
                  f"{r.end_to_end['p95_ms']:.3f}", f"{r.end_to_end['p99_ms']:.3f}",
                  f"{r.end_to_end['p50_ms'] / r.batch:.3f}",
                  f"{r.end_to_end['throughput_items_per_s']:.0f}",
                  "n/a" if added is None else f"{added:.0f}", accuracy_label(r.accuracy))
    return t


def _import_pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib, which is not installed",
                          "pip install 'cmkd-edge[plot]' (or just pip install matplotlib)") from exc
    return plt


def _per_image(r: LatencyReport) -> np.ndarray:
    s = r.end_to_end_samples if r.end_to_end_samples is not None else np.array([r.end_to_end["p50_ms"]])
    return np.asarray(s, dtype=np.float64) / r.batch


def latency_figure(reports: list[LatencyReport]) -> Any:
    """One panel per batch size (end-to-end latency per image) and one of accuracy vs latency.

    Each panel shows one thing: a box plot never mixes batch sizes (a batch-8 call is not comparable
    with a batch-1 call), every latency is per image, and the accuracy panel has one point per
    artifact x backend at the smallest batch, at that artifact's own recorded accuracy; artifacts
    without a recorded accuracy are named in the panel as not measured instead of being dropped.
    Returns the matplotlib Figure (the caller saves and closes it).
    """
    plt = _import_pyplot()
    batches = sorted({r.batch for r in reports})
    fig, axes = plt.subplots(1, len(batches) + 1, figsize=(5.2 * (len(batches) + 1), 5.6), squeeze=False)
    for ax, n in zip(axes[0][:-1], batches, strict=True):
        rows = [r for r in reports if r.batch == n]
        ax.boxplot([_per_image(r) for r in rows], showfliers=False)
        # why rotated: one box per artifact x backend; horizontal labels overlap beyond a few
        ax.set_xticks(range(1, len(rows) + 1), [f"{r.backend}\n{r.artifact}" for r in rows],
                      fontsize=7, rotation=40, ha="right")
        ax.set_ylabel("end-to-end latency per image (ms)")
        ax.set_title(f"batch {n} ({rows[0].iterations} timed calls per box)")
        ax.set_ylim(bottom=0)
    ax = axes[0][-1]
    smallest = batches[0]
    markers = {"fp32": "o", "fp16": "s", "int8": "^"}
    missing, splits = [], set()
    for r in (r for r in reports if r.batch == smallest):
        acc, pct = r.accuracy, top1_percent(r.accuracy)
        if acc is None or pct is None:
            missing.append(f"{r.backend} {r.artifact}")
            continue
        splits.add((acc.split or "?", acc.n))
        by = acc.backend
        note = f" (scored on {by})" if by and by != r.backend else ""
        # a legend, not text labels: artifacts of equal accuracy would print on top of each other
        ax.scatter(r.end_to_end["p50_ms"] / r.batch, pct, marker=markers.get(r.precision, "o"),
                   s=60, alpha=0.8, label=f"{r.backend} {r.artifact}{note}")
    if ax.collections:
        ax.legend(fontsize=7, loc="best")
    where = "; ".join(f"{sp} split, " + (f"n={n}" if n is not None else "n not recorded")
                      for sp, n in sorted(splits, key=str))
    ax.set_xlabel(f"p50 end-to-end latency per image at batch {smallest} (ms)")
    ax.set_ylabel(f"top-1 accuracy, % ({where}; recorded in the manifest)" if where
                  else "top-1 accuracy (none recorded in the manifest)")
    ax.set_title("accuracy vs latency")
    if missing:
        ax.text(0.02, 0.02, "accuracy not measured:\n" + "\n".join(missing), transform=ax.transAxes,
                fontsize=7, va="bottom", ha="left", color="0.35")
    fig.tight_layout()
    return fig


def plot_reports(reports: list[LatencyReport], path: str | os.PathLike[str]) -> Path:
    """Write :func:`latency_figure` as a PNG, atomically (a failed save leaves no truncated file)."""
    from cmkd_edge.fsutil import atomic_open

    plt = _import_pyplot()
    fig = latency_figure(reports)
    try:
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, dpi=120, format="png")
    finally:
        plt.close(fig)
    return Path(path)


__all__ = ["LatencyReport", "profile_bundle", "profile_one", "runnable", "not_runnable", "latency_stats",
           "peak_rss_mb", "rss_now_mb", "recorded_accuracy", "report_document", "write_json", "write_csv",
           "render_table", "latency_figure", "plot_reports", "available"]
