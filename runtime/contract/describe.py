"""A bundle manifest as a short human-readable table (``cmkd-edge bundle --inspect``).

In the runtime because inspecting a bundle is something a device does too (base install only).
"""

from __future__ import annotations

from .manifest import Manifest
from .records import Accuracy


def accuracy_text(m: Manifest, acc: Accuracy | None) -> str:
    """``top1 65.00 (val, n=40)``: a recorded accuracy never without its split and n."""
    if acc is None or acc.metric is None:
        return "not measured"
    n = acc.n if acc.n is not None else m.gate_n(acc.split)  # older bundles: the gate's n
    return (f"{acc.metric} {acc.score:.2f} ({acc.split or 'split not recorded'}, "
            f"{'n not recorded' if n is None else f'n={n}'})")


def describe_manifest(m: Manifest) -> str:
    """Input, preprocessing, artifacts and quantization outcome, one line each."""
    inp, pre = m.input, m.preprocess
    names = m.class_names
    lines = [
        f"task        {m.task} ({len(names)} classes: "
        f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''})",
        f"input       {inp.modality} {inp.units} {list(inp.shape)} bands {','.join(inp.band_names)}",
        f"preprocess  select {list(pre.select)} "
        + (f"crop {list(pre.crop)} " if pre.crop else "")
        + f"to_db {pre.to_db} " + ("to_log True " if pre.to_log else "")
        + f"clip {None if pre.clip is None else list(pre.clip)} "
        + ("centre True " if pre.centre else "") + f"in_graph {pre.in_graph}",
        "",
        f"{'artifact':22s} {'precision':9s} {'backend':12s} {'format':14s} "
        f"{'recorded accuracy (split, n)':32s}  files",
    ]
    for a in m.artifacts:
        lines.append(f"{a.id:22s} {a.precision:9s} {a.backend:12s} {a.format:14s} "
                     f"{accuracy_text(m, a.accuracy):32s}  {', '.join(a.files)}")
    for backend, q in (m.quantization or {}).items():
        if q.rungs:
            tried = ", ".join(f"{r.rung}{'' if r.passed else ' (fail)'}" for r in q.rungs)
            lines.append(f"quantization[{backend}]: accepted {q.accepted}; tried {tried}")
            note = q.gate.unresolved_note if q.gate is not None else None
            if note:
                lines.append(f"  unresolved: {note}")
    if m.output.thresholds is not None:
        how = m.provenance.thresholds or {}
        lines.append(f"thresholds  {', '.join(format(t, '.2f') for t in m.output.thresholds)} "
                     f"(chosen on {how.get('split', '?')}, n={how.get('n', '?')})")
    lines.append("accuracies above are the manifest's record (the gate's split); measure them on "
                 "your data with `cmkd-edge evaluate BUNDLE --split test`")
    prov = m.provenance
    lines.append(f"student sha256 {str(prov.student_checkpoint_sha256)[:16]}..., method "
                 f"{prov.method}, {len(m.files)} files checksummed")
    return "\n".join(lines)
