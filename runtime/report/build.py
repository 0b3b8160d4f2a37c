"""Fill the report's document from the bundle's records and the measurements handed to it.

Inputs are what other commands produce, never re-computed here: the manifest's typed records (model
card, quantization ladder, provenance, files), an ``evaluate``-document (``evaluate_bundle``, or
``evaluate --json``), latency reports (``profile_one``, or ``profile --json``) and a ``select``
decision (``selection.json``). Every accuracy is printed with its split, n and 95 % interval.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.device import device_info, package_versions
from ..contract.bundle import Bundle
from ..contract.records import QuantRecord
from ..selection.records import Selection
from . import plots
from .doc import Bullets, Doc, Figure, KeyValues, Para, Section, Table

#: a class with fewer samples than this in the scored split: its per-class figures cannot be judged
FEW_SAMPLES = 20
#: INT8 p50 more than this share above FP32's on the same backend is reported as slower
SLOWER_TOLERANCE = 0.05
LIBRARIES = ("cmkd-edge", "numpy", "onnxruntime", "openvino", "tensorrt", "matplotlib", "rasterio", "torch", "onnx")


@dataclass
class Inputs:
    """What the report is rendered from (see the module docstring); notes say what is missing and why."""

    bundle: Bundle
    evaluation: dict[str, Any] | None = None
    evaluation_note: str | None = None
    latency: list[dict[str, Any]] = field(default_factory=list)
    latency_skipped: list[dict[str, str]] = field(default_factory=list)
    latency_note: str | None = None
    selection: Selection | None = None
    selection_path: str | None = None
    command: str = ""
    created: str = ""


def pct(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{100.0 * v:.{digits}f}"


def _figure(svg: str | None, alt: str, caption: str = "") -> Figure | Para:
    if svg is None:
        return Para(f"[plot not drawn: matplotlib is not installed (pip install 'cmkd-edge[plot]')] {alt}")
    return Figure(svg, alt, caption)


def build(inp: Inputs) -> Doc:
    """The whole report: model card, accuracy, quantization, latency, device, select, files, warnings."""
    b, m = inp.bundle, inp.bundle.manifest
    doc = Doc(title=f"cmkd-edge report: {Path(str(b.source)).name}",
              subtitle=f"{b.source} - generated {inp.created} by `{inp.command}`")
    warnings: list[str] = []
    _model_card(doc.section("model-card", "Model card"), inp)
    _accuracy(doc, inp, warnings)
    _quantization(doc.section("quantization", "Quantization gate"), m.quantization or {}, warnings)
    _targets(m, warnings)
    _latency(doc.section("latency", "Latency, memory and size on this device"), inp, warnings)
    _device(doc.section("device", "Device and library versions"), inp)
    _selection(doc.section("select", "Deployment choice (cmkd-edge select)"), inp)
    _files(doc.section("files", "Files and checksums"), b)
    w = doc.section("warnings", "Warnings")
    w.add(Bullets(warnings or ["none: nothing a reviewer needs to look at twice was found"],
                  kind="warning" if warnings else "plain"))
    # warnings first after the title: a reviewer reads them before the details
    doc.sections.insert(0, doc.sections.pop())
    return doc


# -- model card ---------------------------------------------------------------------------------
def _model_card(s: Section, inp: Inputs) -> None:
    m = inp.bundle.manifest
    prov, card, pre, i = m.provenance, m.provenance.card, m.preprocess, m.input
    names = list(m.class_names)
    pairs = [("task", f"{m.task}, {len(names)} classes"), ("classes", ", ".join(names))]
    if card is not None and card.model is not None:
        kw = ", ".join(f"{k}={v}" for k, v in card.model.kwargs.items())
        pairs.append(("student", f"{card.model.arch}" + (f" ({kw})" if kw else "")
                      + f", {card.model.in_channels} input channels"))
    else:
        pairs.append(("student", f"{prov.arch or 'arch not recorded'} (network options not recorded: "
                                 "exported before the model card)"))
    pairs.append(("parameters", "not recorded" if card is None or card.params is None else f"{card.params:,}"))
    pairs.append(("MACs per input", "not recorded" if card is None or card.macs is None
                  else f"{card.macs:,} (Conv/Gemm/MatMul of the exported graph)"))
    t = card.teacher if card is not None else None
    if t is not None:
        pairs.append(("teacher", f"{t.arch or '?'} on view {t.view or '?'}, sha256 {t.sha256 or '?'}"))
    elif prov.teacher_checkpoint_sha256:
        pairs.append(("teacher", f"sha256 {prov.teacher_checkpoint_sha256} (arch and view not recorded)"))
    else:
        pairs.append(("teacher", "none (trained from labels only)"))
    synth = " (SYNTHETIC view)" if prov.view_synthetic else ""
    pairs.append(("student view", f"{prov.view or '?'}{synth}; role {prov.role or '?'}"))
    pairs.append(("input", f"{i.modality}, {i.units}, shape {list(i.shape)}, bands {', '.join(i.band_names)}"
                  + ("" if i.expected_range is None else f", expected range {list(i.expected_range)}")))
    ops = [f"select {list(pre.select)}"]
    if pre.crop:
        ops.append(f"crop {list(pre.crop)}")
    if pre.to_db:
        ops.append("linear to dB")
    if pre.to_log:
        ops.append("log")
    if pre.clip is not None:
        ops.append(f"clip {list(pre.clip)}")
    if pre.centre:
        ops.append("centre per chip")
    if pre.mean:
        ops.append(f"normalise mean {[round(v, 3) for v in pre.mean]} std {[round(v, 3) for v in pre.std or ()]}")
    pairs.append(("preprocessing (in the graph)" if pre.in_graph else "preprocessing", "; ".join(ops)))
    opts = card.method_options if card is not None else None
    pairs.append(("distillation", f"{prov.method or 'not recorded'}"
                  + ("" if opts is None else f"; options {opts or '{} (defaults)'}")))
    pairs.append(("labels seen", prov.labels.summary() if prov.labels is not None else "not recorded"))
    d = prov.data
    if d is not None:
        pairs.append(("training data", f"{d.path or 'synthetic default'} (layout {d.layout or '?'}, seed {d.seed})"))
        pairs.append(("split table", f"{d.split_file or 'none'}; sha256 {d.split_sha256 or '-'}; "
                                     f"origin {d.split_origin or '?'}"))
    else:
        pairs.append(("training data", "not recorded"))
    if prov.student_checkpoint_sha256:
        pairs.append(("student checkpoint", f"sha256 {prov.student_checkpoint_sha256}"))
    if card is not None:
        pairs.append(("training command", card.train_command or "not recorded"))
        pairs.append(("export command", card.export_command or "not recorded"))
    for key, q in (m.quantization or {}).items():
        if q.outcome:
            pairs.append((f"quantize {key}", q.outcome))
    s.add(KeyValues(pairs))


# -- accuracy -------------------------------------------------------------------------------------
def _row_label(r: dict[str, Any]) -> str:
    return f"{r['artifact']} on {r['backend']}"


def _accuracy(doc: Doc, inp: Inputs, warnings: list[str]) -> None:
    s = doc.section("accuracy", "Accuracy per artifact and backend")
    ev = inp.evaluation
    m = inp.bundle.manifest
    if ev is None:
        s.add(Para(f"Not measured: {inp.evaluation_note or 'no evaluation given'}. The manifest's recorded "
                   "accuracies (the gate's split) follow."))
        rows = []
        for a in m.artifacts:
            acc = a.accuracy
            n = None if acc is None else (acc.n if acc.n is not None else m.gate_n(acc.split))
            rows.append([a.id, a.backend, a.precision, "-" if acc is None or acc.score is None else f"{acc.score:.2f}",
                         "-" if acc is None else str(acc.split), "-" if n is None else str(n)])
        s.add(Table(["artifact", "backend", "precision", "recorded score", "split", "n"], rows, numeric=(3, 5)))
        warnings.append(f"accuracy not measured on this device: {inp.evaluation_note}")
        for sid, title in (("per-class", "Per-class drop"), ("confusion", "Confusion matrix"),
                           ("calibration", "Calibration")):
            doc.section(sid, title).add(Para("Not measured (see the accuracy section)."))
        return
    metric = ev["metric"]
    synth = " (SYNTHETIC data)" if ev.get("synthetic") else ""
    s.add(Para(f"Measured through the runtime's Classifier on the {ev['split']} split, n={ev['n']}, "
               f"data {ev.get('data')}{synth}; {metric} in percent with its 95 % interval; drop = FP32 "
               "minus the artifact in points with the 95 % paired interval (same samples)."))
    rows = []
    for r in ev["rows"]:
        iv = r.get("interval")
        drop = "-" if "drop" not in r else f"{r['drop']:+.2f} [{r['drop_lo']:+.2f}, {r['drop_hi']:+.2f}]"
        rows.append([r["artifact"], r["backend"], r["precision"], r["gate"], pct(r[metric]),
                     "-" if not iv else f"[{pct(iv[0])}, {pct(iv[1])}]", str(r["n"]), r["split"],
                     "-" if "agreement_with_fp32" not in r else f"{r['agreement_with_fp32']:.1f}",
                     drop, r.get("difference", "")])
        if r.get("gate_note"):
            warnings.append(f"{_row_label(r)}: {r['gate_note']}")
    s.add(Table(["artifact", "backend", "precision", "gate", f"{metric} %", "95% interval", "n", "split",
                 "agree %", "drop [95%]", "difference"], rows, numeric=(4, 6, 8, 9)))
    for sk in ev.get("skipped") or []:
        warnings.append(f"not run here: {sk['artifact']} on {sk['backend']}: {sk['why']}")
    if m.task != "multiclass":
        for sid, title in (("per-class", "Per-class drop"), ("confusion", "Confusion matrix"),
                           ("calibration", "Calibration")):
            doc.section(sid, title).add(Para("Multi-label bundle: per-class AP is in the evaluate document; "
                                             "confusion and calibration apply to multi-class only."))
        return
    native = {a.id: a.backend for a in m.artifacts}
    _per_class(doc.section("per-class", "Per-class drop"), ev, list(m.class_names), native, warnings)
    _confusion(doc.section("confusion", "Confusion matrix"), ev, list(m.class_names), native)
    _calibration(doc.section("calibration", "Calibration"), ev, native)


def _reference(ev: dict[str, Any]) -> dict[str, Any]:
    ref = ev.get("reference") or {}
    return next((r for r in ev["rows"] if r["artifact"] == ref.get("artifact") and r["backend"] == ref.get("backend")),
                ev["rows"][0])


def _compared(ev: dict[str, Any], native: dict[str, str]) -> list[dict[str, Any]]:
    """Rows worth a per-class comparison: each quantized artifact once, on the backend it was made
    for (``native``: artifact id -> its manifest backend) when that row exists."""
    ref = _reference(ev)
    rows = sorted((r for r in ev["rows"] if r is not ref and r["precision"] != "fp32"),
                  key=lambda r: r["backend"] != native.get(r["artifact"]))
    seen, out = set(), []
    for r in rows:
        if r["artifact"] not in seen:
            seen.add(r["artifact"])
            out.append(r)
    return out


def _counts(ref: dict[str, Any]) -> list[int]:
    return [int(sum(row)) for row in ref.get("confusion_matrix") or []]


def _per_class(s: Section, ev: dict[str, Any], names: list[str], native: dict[str, str],
               warnings: list[str]) -> None:
    ref = _reference(ev)
    counts = _counts(ref)
    others = _compared(ev, native)
    base = [ref["per_class_accuracy"].get(n) for n in names]
    headers = ["class", "n", f"{_row_label(ref)} %"]
    rows, drops = [], {}
    for r in others:
        headers += [f"{_row_label(r)} %", "drop"]
        drops[_row_label(r)] = [None if a is None or c is None else round(100 * (a - c), 4)
                                for a, c in zip(base, [r["per_class_accuracy"].get(n) for n in names], strict=True)]
    for k, name in enumerate(names):
        row = [name, str(counts[k]) if counts else "-", pct(base[k])]
        for r in others:
            d = drops[_row_label(r)][k]
            row += [pct(r["per_class_accuracy"].get(name)), "-" if d is None else f"{d:+.2f}"]
        rows.append(row)
    s.add(Para(f"Per-class accuracy (recall) on {ev['split']} (n={ev['n']}) of the FP32 reference and of each "
               "quantized artifact; drop in points (positive = worse than FP32)."))
    s.add(Table(headers, rows, numeric=tuple(range(1, len(headers)))))
    if drops:
        s.add(_figure(plots.class_drop(names, drops), "per-class drop against FP32"))
    few = [f"{n} (n={c})" for n, c in zip(names, counts, strict=False) if c < FEW_SAMPLES]
    if few:
        warnings.append(f"{len(few)} class(es) have fewer than {FEW_SAMPLES} samples in the {ev['split']} split, "
                        f"too few to judge a per-class drop (one sample moves it by 5 points or more): "
                        + ", ".join(few))


def _confusion(s: Section, ev: dict[str, Any], names: list[str], native: dict[str, str]) -> None:
    shown = [_reference(ev), *_compared(ev, native)[:1]]
    for r in shown:
        s.add(_figure(plots.confusion(r["confusion_matrix"], names, f"{_row_label(r)} ({ev['split']}, n={r['n']})"),
                      f"confusion matrix of {_row_label(r)}", "rows: true class; cells: counts, "
                      "shade: share of the true class"))
        s.add(Table(["true \\ predicted", *[str(i) for i in range(len(names))]],
                    [[f"{i} {n}", *[str(v) for v in row]] for i, (n, row) in enumerate(
                        zip(names, r["confusion_matrix"], strict=True))],
                    caption=f"confusion matrix, {_row_label(r)}", numeric=tuple(range(1, len(names) + 1))))


def _calibration(s: Section, ev: dict[str, Any], native: dict[str, str]) -> None:
    rows = [[_row_label(r), r["precision"], f"{r['ece']:.4f}", str(r["n"])] for r in ev["rows"] if "ece" in r]
    s.add(Table(["artifact x backend", "precision", "ECE (15 bins)", "n"], rows, numeric=(2, 3)))
    curves = {_row_label(r): r["calibration"] for r in [_reference(ev), *_compared(ev, native)]
              if r.get("calibration")}
    if curves:
        s.add(_figure(plots.reliability(curves), "reliability diagram"))


# -- quantization ----------------------------------------------------------------------------------
def _quantization(s: Section, quant: dict[str, QuantRecord], warnings: list[str]) -> None:
    if not quant:
        s.add(Para("No quantization record: this bundle holds no quantized artifact made by cmkd-edge quantize."))
        return
    for key, q in quant.items():
        g = q.gate
        t = q.target
        target = ("" if t is None else f"; quantized for {t.profile} ({t.machine}"
                  + (f": {', '.join(t.features)}" if t.features else "") + f", {t.source})")
        s.add(Para(f"{key}: method {q.method or '?'}; accepted rung {q.accepted or 'none'} "
                   f"({q.accepted_precision or '-'}){target}; {q.outcome or ''}"))
        if g is not None:
            res = "resolved" if g.resolved else "NOT resolved" if g.resolved is False else "resolution not recorded"
            s.add(KeyValues([
                ("gate", f"{g.metric or '?'} on {g.split or '?'} (n={g.n}), --max-drop {g.max_drop} points, "
                         f"per-class limit {g.max_class_drop}, confidence {g.confidence}"),
                ("resolution", f"{res}" + (f": {g.unresolved_note}" if g.unresolved_note else "")
                 + ("" if not g.resolution else "; " + ", ".join(
                     f"{k.replace('_', ' ')} {v:.2f}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
                     for k, v in g.resolution.items()))),
                ("FP32 on the gate's samples", "-" if (g.fp32_score if g.fp32_score is not None else g.fp32_top1)
                 is None else f"{g.fp32_score if g.fp32_score is not None else g.fp32_top1:.2f}"),
                ("gate samples", f"{g.data or 'training data'}, split {g.split}, sha256 {g.sha256 or '-'}"
                 + (" (SYNTHETIC)" if g.synthetic else "")),
            ]))
            if g.resolved is False:
                warnings.append(f"{key}: the gate's data could not resolve --max-drop {g.max_drop} "
                                f"({g.split}, n={g.n}): {g.unresolved_note or 'the point estimate decided'}")
        rows = []
        for r in q.rungs:
            iv = "-" if r.drop_lo is None else f"[{r.drop_lo:+.2f}, {r.drop_hi:+.2f}]"
            rows.append([r.rung + (" (accepted)" if r.rung == q.accepted else ""), r.precision,
                         "-" if r.score is None else f"{r.score:.2f}", "-" if r.drop is None else f"{r.drop:+.2f}",
                         iv, "pass" if r.passed else "fail" if r.passed is False else "-", r.decided_by or "-",
                         r.reason or r.error or ""])
        s.add(Table(["rung", "precision", "score", "drop", "95% interval", "gate", "decided by", "why"], rows,
                    caption=f"ladder {key}: every rung tried, in order", numeric=(2, 3)))
        for gone in q.replaced:
            s.add(Para(f"removed {gone.id}: {gone.why}"))
        if q.ended_lower:
            warnings.append(f"{key}: quantization ended on a lower rung ({q.accepted}) than asked")


def _targets(m: Any, warnings: list[str]) -> None:
    """An INT8 artifact quantized for another device class than this one (``quantize --for``): its
    gate and its speed may not hold here (``device_profiles.mismatch``, the rule the runtime warns by)."""
    from ..device_profiles import artifact_target, mismatch

    for a in m.artifacts:
        if a.precision == "int8":
            note = mismatch(artifact_target(m, a))
            if note:
                warnings.append(f"{a.id}: {note}")


# -- latency ---------------------------------------------------------------------------------------
def artifact_size_mb(bundle: Bundle, artifact_id: str) -> float:
    m = bundle.manifest
    return sum(bundle.path(rel).stat().st_size for rel in m.artifact(artifact_id).files) / 2**20


def _latency(s: Section, inp: Inputs, warnings: list[str]) -> None:
    reps = inp.latency
    if not reps:
        s.add(Para(f"Not measured: {inp.latency_note or 'no latency report given'}."))
        warnings.append(f"latency not measured: {inp.latency_note}")
        return
    b = inp.bundle
    first = reps[0]
    s.add(Para(f"cmkd-edge profile's figures: end-to-end = Classifier.predict on raw input; {first['warmup']} "
               f"warm-up and {first['iterations']} timed calls per row; RSS added = the row's peak over what the "
               f"process held when it started; size = the artifact's files."))
    rows = []
    for r in reps:
        e = r["end_to_end"]
        added = (r.get("rss") or {}).get("added_mb")
        rows.append([r["backend"], r["precision"], r["artifact"], str(r["threads"] or "default"), str(r["batch"]),
                     f"{r['cold_start']['total_ms']:.0f}", f"{r['model_only']['p50_ms']:.3f}", f"{e['p50_ms']:.3f}",
                     f"{e['p90_ms']:.3f}", f"{e['p99_ms']:.3f}", f"{e['throughput_items_per_s']:.0f}",
                     f"{r['peak_rss_mb']:.0f}", "n/a" if added is None else f"{added:.1f}",
                     f"{artifact_size_mb(b, r['artifact']):.3f}"])
    s.add(Table(["backend", "precision", "artifact", "threads", "batch", "cold ms", "model p50", "e2e p50",
                 "e2e p90", "e2e p99", "items/s", "peak RSS MiB", "RSS added MiB", "size MiB"], rows,
                numeric=tuple(range(4, 14))))
    for batch in sorted({r["batch"] for r in reps}):
        rs = [r for r in reps if r["batch"] == batch]
        e2e = [r["end_to_end"] for r in rs]
        svg = plots.latency_bars([f"{r['backend']} {r['artifact']}" for r in rs], [r["precision"] for r in rs],
                                 [e["p50_ms"] for e in e2e], [e["p90_ms"] for e in e2e], [e["p99_ms"] for e in e2e],
                                 [r["cold_start"]["total_ms"] for r in rs], batch)
        s.add(_figure(svg, f"latency at batch {batch}"))
    for sk in inp.latency_skipped:
        warnings.append(f"latency not measured for {sk['artifact']} on {sk['backend']}: {sk['why']}")
    # INT8 slower than FP32 on the same backend and batch: quantization costs accuracy for nothing here
    for r in reps:
        if r["precision"] != "int8":
            continue
        ref = [f for f in reps if f["precision"] == "fp32" and f["backend"] == r["backend"] and f["batch"] == r["batch"]
               and f["threads"] == r["threads"]]
        # within SLOWER_TOLERANCE is a tie on a noisy machine, not a finding
        if ref and r["end_to_end"]["p50_ms"] > (1 + SLOWER_TOLERANCE) * min(f["end_to_end"]["p50_ms"] for f in ref):
            fp32 = min(ref, key=lambda f: f["end_to_end"]["p50_ms"])
            warnings.append(f"INT8 is slower than FP32 here: {r['artifact']} on {r['backend']} p50 "
                            f"{r['end_to_end']['p50_ms']:.3f} ms vs {fp32['artifact']} "
                            f"{fp32['end_to_end']['p50_ms']:.3f} ms "
                            f"(batch {r['batch']}; CPU flags {', '.join(r['device']['cpu']['flags_present'])})")


def _device(s: Section, inp: Inputs) -> None:
    dev = inp.latency[0]["device"] if inp.latency else device_info()
    cpu = dev["cpu"]
    flags = cpu.get("flags") or {}
    versions = package_versions(LIBRARIES)
    if inp.latency:
        versions.update(inp.latency[0].get("versions") or {})
    s.add(KeyValues([("CPU", f"{cpu['model']} ({cpu['machine']}, {cpu['logical_cores']} logical cores)"),
                     ("CPU flags", ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())),
                     ("GPU", str(dev.get("gpu") or "none")),
                     ("libraries", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))),
                     ("bundle built with", ", ".join(f"{k} {v}" for k, v in sorted(
                         (inp.bundle.manifest.provenance.tools or {}).items()) if v) or "not recorded")]))


# -- select ----------------------------------------------------------------------------------------
def _selection(s: Section, inp: Inputs) -> None:
    sel = inp.selection
    if sel is None:
        s.add(Para("No selection.json beside this bundle: `cmkd-edge select BUNDLE... --max-latency-ms MS` "
                   "writes one, and this section then shows the decision and the front."))
        return
    p = sel.budget.percentile
    s.add(KeyValues([("decision", ("chosen: " if sel.chosen else "none fits: ") + sel.why),
                     ("budget", sel.budget.describe()), ("batch, threads", f"{sel.batch}, {list(sel.threads)}"),
                     ("measured", sel.method), ("when, how", f"{sel.created}: `{sel.command}`"),
                     ("file", str(inp.selection_path))]))
    rows = []
    for c in sorted(sel.candidates, key=lambda c: (not c.pareto, c.latency_ms[p])):
        rows.append([("chosen " if c.id == sel.chosen else "") + ("front" if c.pareto else ""), c.bundle, c.artifact,
                     c.backend, str(c.threads),
                     f"{c.accuracy:.2f} [{c.accuracy_interval[0]:.2f}, {c.accuracy_interval[1]:.2f}]",
                     f"{c.split}, n={c.n}",
                     "-" if c.drop is None or c.drop_interval is None else
                     f"{c.drop:+.2f} [{c.drop_interval[0]:+.2f}, {c.drop_interval[1]:+.2f}]",
                     f"{c.latency_ms[p]:.3f}", "n/a" if c.memory_mb is None else f"{c.memory_mb:.1f}",
                     f"{c.size_mb:.3f}", "fits" if c.fits else "; ".join(f.text for f in c.fails)])
    s.add(Table(["", "bundle", "artifact", "backend", "threads", "accuracy % [95%]", "split, n", "drop [95%]",
                 f"{p} ms", "mem MiB", "size MiB", "budget"], rows, numeric=(4, 8, 9, 10)))
    pts = [{"latency": c.latency_ms[p], "accuracy": c.accuracy, "size_mb": c.size_mb, "pareto": c.pareto,
            "chosen": c.id == sel.chosen, "precision": c.precision, "label": c.id} for c in sel.candidates]
    s.add(_figure(plots.front(pts, p), "select's candidates and front"))


def _files(s: Section, b: Bundle) -> None:
    from cmkd_edge.fsutil import sha256_file

    from ..contract.manifest import MANIFEST_NAME

    m = b.manifest
    rows = [[rel, f"{b.path(rel).stat().st_size:,}", digest] for rel, digest in sorted(m.files.items())]
    rows.append([MANIFEST_NAME, f"{(b.root / MANIFEST_NAME).stat().st_size:,}",
                 sha256_file(b.root / MANIFEST_NAME) + " (the manifest itself)"])
    s.add(Table(["file", "bytes", "sha256"], rows, numeric=(1,)))


def choose_selection(paths: Sequence[str | os.PathLike[str]], bundle: Bundle) -> tuple[Selection, str] | None:
    """The first readable selection.json among ``paths`` that measured ``bundle`` (by its key)."""
    from ..selection.choose import read_selection
    from ..speed_probe import bundle_key

    key = bundle_key(bundle)
    for p in paths:
        if Path(p).is_file():
            sel = read_selection(p)
            if any(e.key == key for e in sel.bundles):
                return sel, str(p)
    return None
