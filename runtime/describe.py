"""A bundle manifest as a short human-readable table (``cmkd-edge bundle --inspect``).

In the runtime because inspecting a bundle is something a device does too (base install only).
"""

from __future__ import annotations

from typing import Any

from .manifest import Manifest


def accuracy_text(m: Manifest, acc: dict[str, Any] | None) -> str:
    """``top1 65.00 (val, n=40)``: a recorded accuracy never without its split and n."""
    if not acc:
        return "not measured"
    key = next((k for k in ("top1", "micro_f1", "accuracy", "map") if k in acc), None)
    if key is None:
        return "not measured"
    n = acc.get("n")
    if n is None:  # older bundles: the n of the gate that scored that split
        n = next((q["gate"].get("n") for q in (m.quantization or {}).values()
                  if isinstance(q, dict) and isinstance(q.get("gate"), dict)
                  and q["gate"].get("split") == acc.get("split")), None)
    return (f"{key} {acc[key]:.2f} ({acc.get('split', 'split not recorded')}, "
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
        if isinstance(q, dict) and "rungs" in q:
            tried = ", ".join(f"{r['rung']}{'' if r.get('passed') else ' (fail)'}" for r in q["rungs"])
            lines.append(f"quantization[{backend}]: accepted {q['accepted']}; tried {tried}")
            note = (q.get("gate") or {}).get("unresolved_note")
            if note:
                lines.append(f"  unresolved: {note}")
    if m.output.thresholds is not None:
        how = m.provenance.get("thresholds") or {}
        lines.append(f"thresholds  {', '.join(format(t, '.2f') for t in m.output.thresholds)} "
                     f"(chosen on {how.get('split', '?')}, n={how.get('n', '?')})")
    lines.append("accuracies above are the manifest's record (the gate's split); measure them on "
                 "your data with `cmkd-edge evaluate BUNDLE --split test`")
    prov = m.provenance
    lines.append(f"student sha256 {str(prov.get('student_checkpoint_sha256'))[:16]}..., method "
                 f"{prov.get('method')}, {len(m.files)} files checksummed")
    return "\n".join(lines)
