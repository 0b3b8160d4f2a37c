"""Choose a deployment under a budget: measure every candidate, keep the Pareto front, pick the fastest
candidate that fits, or say which constraint binds and by how much for the nearest ones.

A candidate is one artifact x backend x thread count of one bundle that this device runs
(``profiler.runnable``); pairs it cannot run are skips with the reason (``profiler.not_runnable``,
or the error opening it raised). Bundles must answer the same question (task and classes): a
selection across tasks would compare accuracies of different problems.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cmkd_edge.errors import ConfigError, DataError
from cmkd_edge.fsutil import atomic_write_text

from ..backends.device import device_info
from ..contract.bundle import Bundle, open_bundle
from ..speed_probe import bundle_key
from . import measure
from .budget import failures, shortfall
from .records import Budget, BundleEntry, Candidate, Selection, Skip

SELECTION_NAME = "selection.json"
Loader = Callable[[Bundle], tuple[Any, Any, dict[str, Any]]]


def default_threads() -> tuple[int, ...]:
    """1 and every core: the two settings a device is deployed with (dedup on a 1-core board)."""
    return tuple(sorted({1, os.cpu_count() or 1}))


def selection_path(bundles: Sequence[str | os.PathLike[str]]) -> Path:
    """``selection.json`` beside the bundles: in the folder that holds the first one (their common
    folder when they share one, as ``bundles/*``). Never inside a bundle: its files are checksummed,
    and ``report BUNDLE`` looks for the decision beside it."""
    return Path(bundles[0]).resolve().parent / SELECTION_NAME


def _labels(paths: Sequence[str]) -> list[str]:
    """Short names for the table: the folder or archive name, the full path where two collide."""
    names = [Path(p).name or str(p) for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths, strict=True)]


def _same_question(bundles: list[tuple[str, Bundle]]) -> None:
    first_path, first = bundles[0]
    for path, b in bundles[1:]:
        m, f = b.manifest, first.manifest
        if m.task != f.task or tuple(m.class_names) != tuple(f.class_names):
            raise DataError(
                f"bundle {path} answers another question ({m.task}, {len(m.class_names)} classes: "
                f"{', '.join(m.class_names[:4])}{', ...' if len(m.class_names) > 4 else ''}) than "
                f"{first_path} ({f.task}, {len(f.class_names)} classes: "
                f"{', '.join(f.class_names[:4])}{', ...' if len(f.class_names) > 4 else ''})",
                "select compares candidates for one task and one class list; leave that bundle out")


def _pareto(cands: list[Candidate], percentile: str) -> set[str]:
    """Ids not dominated on (accuracy up, latency at ``percentile`` down, size down)."""
    def point(c: Candidate) -> tuple[float, float, float]:
        return (-c.accuracy, c.latency_ms.get(percentile, float("inf")), c.size_mb)

    front = set()
    for c in cands:
        pc = point(c)
        if not any(all(a <= b for a, b in zip(point(o), pc, strict=True)) and point(o) != pc
                   for o in cands if o is not c):
            front.add(c.id)
    return front


def _summary(c: Candidate, p: str) -> str:
    drop = ("" if c.drop is None or c.drop_interval is None else
            f", drop {c.drop:+.2f} [{c.drop_interval[0]:+.2f}, {c.drop_interval[1]:+.2f}] points")
    mem = "" if c.memory_mb is None else f", memory {c.memory_mb:.1f} MiB"
    return (f"{p} {c.latency_ms[p]:.3f} ms, {c.metric} {c.accuracy:.2f} % "
            f"[{c.accuracy_interval[0]:.2f}, {c.accuracy_interval[1]:.2f}] ({c.split}, n={c.n}){drop}, "
            f"size {c.size_mb:.2f} MiB{mem}")


def _decide(cands: list[Candidate], budget: Budget) -> tuple[str | None, str, tuple[str, ...], str | None]:
    """(chosen id, why, nearest ids, binding constraint)."""
    p = budget.percentile
    fit = [c for c in cands if c.fits]
    if fit:
        best = min(fit, key=lambda c: (c.latency_ms[p], -c.accuracy, c.size_mb))
        where = "on the Pareto front" if best.pareto else "not on the front (a faster or better one misses the budget)"
        # why said: with no accuracy limit the fastest wins whatever quantization cost it
        loose = ("" if budget.min_accuracy is not None or budget.max_drop is not None else
                 "; the budget sets no accuracy limit: add --max-drop or --min-accuracy to bound what it may lose")
        return best.id, (f"fastest of {len(fit)} of {len(cands)} candidates inside the budget "
                         f"({budget.describe()}): {best.id}: {_summary(best, p)}; {where}{loose}"), (), None
    counts: dict[str, int] = {}
    for c in cands:
        for f in c.fails:
            counts[f.constraint] = counts.get(f.constraint, 0) + 1
    binding = max(counts, key=lambda k: counts[k]) if counts else None
    nearest = sorted(cands, key=lambda c: shortfall(c.fails))[:3]
    parts = [f"{c.id}: " + "; ".join(f.text for f in c.fails) for c in nearest]
    why = (f"no candidate meets the budget ({budget.describe()}); {binding} fails for "
           f"{counts.get(binding or '', 0)} of {len(cands)} candidates; nearest: " + " | ".join(parts))
    return None, why, tuple(c.id for c in nearest), binding


def run_selection(bundles: Sequence[str], loader: Loader, budget: Budget, *, data: str | None,
                  split: str, batch: int = 1, threads: Sequence[int] | None = None, warmup: int = 10,
                  iterations: int = 200, use_cache: bool = True,
                  cache_dir: str | os.PathLike[str] | None = None, command: str | None = None,
                  progress: Callable[[str], None] | None = None) -> Selection:
    """Measure every runnable candidate of ``bundles`` and decide under ``budget``.

    Args:
        loader: ``loader(bundle) -> (x, labels, info)``: the labelled raw samples of ``split`` for
            that bundle (called only when its accuracy is not cached).
        threads: thread counts to measure (default :func:`default_threads`).
    Raises:
        DataError: bundles of different tasks or class lists; no candidate runnable here.
        BundleError: a bundle that does not open or verify.
    """
    from ..profiler import not_runnable, runnable

    say = progress or (lambda _m: None)
    if not bundles:
        raise ConfigError("select needs at least one BUNDLE")
    threads = tuple(sorted(set(threads or default_threads())))
    opened = [(str(p), open_bundle(p)) for p in bundles]
    _same_question(opened)
    labels = _labels([p for p, _ in opened])
    command = command or shlex.join(sys.argv)
    cands: list[Candidate] = []
    skipped: list[Skip] = []
    entries: list[BundleEntry] = []
    for label, (path, b) in zip(labels, opened, strict=True):
        skipped += [Skip(bundle=label, artifact=s["artifact"], backend=s["backend"], why=s["why"])
                    for s in not_runnable(b)]
        pairs = runnable(b)
        if not pairs:
            continue
        say(f"{label}: accuracy of {len(pairs)} artifact x backend pair(s) on {split}")
        doc, acc_cached = measure.accuracy(b, lambda b=b: loader(b), data=data, split=split,
                                           use_cache=use_cache, cache_dir=cache_dir,
                                           progress=lambda m, label=label: say(f"{label}: {m}"))
        entries.append(BundleEntry(path=path, key=bundle_key(b), data=doc.get("data"),
                                   synthetic=doc.get("synthetic"), split_table=doc.get("split_table")))
        ref = doc.get("reference")
        ref_id = None if ref is None else f"{ref['artifact']}@{ref['backend']}"
        for row in doc["rows"]:
            for t in threads:
                cid = f"{label}:{row['artifact']}@{row['backend']}/t{t}"
                try:
                    rep, lat_cached = measure.latency(b, row["backend"], row["artifact"], threads=t,
                                                      batch=batch, warmup=warmup, iterations=iterations,
                                                      use_cache=use_cache, cache_dir=cache_dir,
                                                      command=command)
                except measure.UNRUNNABLE as exc:
                    skipped.append(Skip(bundle=label, artifact=row["artifact"], backend=row["backend"],
                                        why=f"{t} thread(s): {exc.one_line()}"))
                    continue
                say(f"{cid}: {rep['end_to_end'][budget.percentile + '_ms']:.3f} ms {budget.percentile}"
                    + (" (cached)" if lat_cached else ""))
                cands.append(_candidate(cid, label, b, row, rep, doc, ref_id, t, batch,
                                        acc_cached and lat_cached))
    if not cands:
        why = "; ".join(f"{s.artifact} on {s.backend}: {s.why}" for s in skipped[:3])
        raise DataError("no candidate of these bundles runs on this device" + (f" ({why})" if why else ""),
                        "install the backend the bundles were built for, or bring an ONNX artifact")
    front = _pareto(cands, budget.percentile)
    cands = [_judge(c, budget, front) for c in cands]
    chosen, why, nearest, binding = _decide(cands, budget)
    return Selection(
        budget=budget, batch=batch, threads=threads, split=split, bundles=tuple(entries),
        candidates=tuple(cands), front=tuple(c.id for c in cands if c.pareto), chosen=chosen, why=why,
        device=device_info(), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=command, task=opened[0][1].manifest.task, nearest=nearest, binding=binding,
        skipped=tuple(skipped),
        method=(f"accuracy: cmkd-edge evaluate's scoring through Classifier on {split} (95 % exact "
                f"interval; drop vs the bundle's FP32 with a 95 % paired interval); latency: cmkd-edge "
                f"profile's end-to-end timing, {warmup} warm-up + {iterations} timed calls at batch "
                f"{batch} per thread count; memory: RSS the artifact added; size: its files"))


def _candidate(cid: str, label: str, b: Bundle, row: dict[str, Any], rep: dict[str, Any],
               doc: dict[str, Any], ref_id: str | None, threads: int, batch: int, cached: bool) -> Candidate:
    metric = doc["metric"]
    e2e = rep["end_to_end"]
    files = measure.artifact_files(b, row["artifact"])
    size = sum(b.path(rel).stat().st_size for rel in files) / 2**20
    lo, hi = row.get("interval") or (row[metric], row[metric])
    rss = rep.get("rss") or {}
    drop_iv = (row["drop_lo"], row["drop_hi"]) if "drop_lo" in row else None
    return Candidate(
        id=cid, bundle=label, artifact=row["artifact"], backend=row["backend"], precision=row["precision"],
        threads=threads, batch=batch, metric=metric,
        accuracy=round(100.0 * row[metric], 4), accuracy_interval=(round(100.0 * lo, 4), round(100.0 * hi, 4)),
        split=row["split"], n=row["n"],
        latency_ms={"p50": e2e["p50_ms"], "p90": e2e["p90_ms"], "p99": e2e["p99_ms"], "mean": e2e["mean_ms"],
                    "cold_start": rep["cold_start"]["total_ms"], "model_p50": rep["model_only"]["p50_ms"]},
        size_mb=round(size, 6), files=files, memory_mb=rss.get("added_mb"),
        memory_method=str(rss.get("method", "")), drop=row.get("drop"), drop_interval=drop_iv,
        reference=ref_id, gate=row.get("gate", "-"), cached=cached)


def _judge(c: Candidate, budget: Budget, front: set[str]) -> Candidate:
    from dataclasses import replace

    fails = failures(c, budget)
    return replace(c, pareto=c.id in front, fails=fails, fits=not fails)


def write_selection(sel: Selection, path: str | os.PathLike[str]) -> Path:
    """Write ``sel`` as JSON atomically (temporary name + rename: a reader never sees half a file)."""
    import json

    atomic_write_text(path, json.dumps(sel.to_dict(), indent=2) + "\n")
    return Path(path)


def read_selection(path: str | os.PathLike[str]) -> Selection:
    """A ``selection.json`` as its record; one line naming the field and the file when it does not fit."""
    import json

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable selection ({exc})") from None
    return Selection.from_dict(doc, source=path)
