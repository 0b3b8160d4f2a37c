"""A bundle manifest as a short human-readable table (``cmkd-edge bundle --inspect``)."""

from __future__ import annotations

from typing import Any


def manifest_table(m: dict[str, Any]) -> str:
    """Input, preprocessing, artifacts and quantization outcome, one line each."""
    inp, pre = m["input"], m["preprocess"]
    lines = [
        f"task        {m['task']} ({len(m['class_names'])} classes: "
        f"{', '.join(m['class_names'][:6])}{', ...' if len(m['class_names']) > 6 else ''})",
        f"input       {inp['modality']} {inp['units']} {inp['shape']} bands "
        f"{','.join(inp['band_names'])}",
        f"preprocess  select {pre.get('select')} to_db {pre.get('to_db')} clip {pre.get('clip')} "
        f"in_graph {pre.get('in_graph')}",
        "",
        f"{'artifact':22s} {'precision':9s} {'backend':12s} {'format':14s} {'top1':>7s}  files",
    ]
    for a in m["artifacts"]:
        acc = (a.get("accuracy") or {}).get("top1")
        lines.append(f"{a['id']:22s} {a['precision']:9s} {a['backend']:12s} {a['format']:14s} "
                     f"{'' if acc is None else format(acc, '.2f'):>7s}  {', '.join(a['files'])}")
    for backend, q in (m.get("quantization") or {}).items():
        if isinstance(q, dict) and "rungs" in q:
            tried = ", ".join(f"{r['rung']}{'' if r.get('passed') else ' (fail)'}" for r in q["rungs"])
            lines.append(f"quantization[{backend}]: accepted {q['accepted']}; tried {tried}")
    prov = m.get("provenance", {})
    lines.append(f"student sha256 {str(prov.get('student_checkpoint_sha256'))[:16]}..., method "
                 f"{prov.get('method')}, {len(m['files'])} files checksummed")
    return "\n".join(lines)
