"""A bundle manifest as a short human-readable table (``cmkd-edge bundle --inspect``).

In the runtime because inspecting a bundle is something a device does too (base install only).
"""

from __future__ import annotations

from .manifest import Manifest


def describe_manifest(m: Manifest) -> str:
    """Input, preprocessing, artifacts and quantization outcome, one line each."""
    inp, pre = m.input, m.preprocess
    names = m.class_names
    lines = [
        f"task        {m.task} ({len(names)} classes: "
        f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''})",
        f"input       {inp.modality} {inp.units} {list(inp.shape)} bands {','.join(inp.band_names)}",
        f"preprocess  select {list(pre.select)} to_db {pre.to_db} "
        f"clip {None if pre.clip is None else list(pre.clip)} in_graph {pre.in_graph}",
        "",
        f"{'artifact':22s} {'precision':9s} {'backend':12s} {'format':14s} {'top1':>7s}  files",
    ]
    for a in m.artifacts:
        acc = (a.accuracy or {}).get("top1")
        lines.append(f"{a.id:22s} {a.precision:9s} {a.backend:12s} {a.format:14s} "
                     f"{'' if acc is None else format(acc, '.2f'):>7s}  {', '.join(a.files)}")
    for backend, q in (m.quantization or {}).items():
        if isinstance(q, dict) and "rungs" in q:
            tried = ", ".join(f"{r['rung']}{'' if r.get('passed') else ' (fail)'}" for r in q["rungs"])
            lines.append(f"quantization[{backend}]: accepted {q['accepted']}; tried {tried}")
    prov = m.provenance
    lines.append(f"student sha256 {str(prov.get('student_checkpoint_sha256'))[:16]}..., method "
                 f"{prov.get('method')}, {len(m.files)} files checksummed")
    return "\n".join(lines)
