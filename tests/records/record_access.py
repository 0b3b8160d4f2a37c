"""String-key reads of stage records outside the record layer (issue 24), found in the source.

Stage records (checkpoint metadata, the manifest and its quantization, gate, rung, accuracy and
provenance records, artifact ids) are typed; only the record layer (``runtime/contract/codec.py``,
``records.py``) turns them into dicts and back. ``python -m tests.records.record_access [REPO]`` prints
the count and every offending line (run it on an older checkout to see what the records replaced).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: the source folders read; the record layer itself is exempt
FOLDERS = ("cmkd_edge", "export", "runtime", "benchmarks")
#: (the contract folder also holds the manifest, bundle reader and specs: those are checked)
EXEMPT = ("runtime/contract/codec.py", "runtime/contract/records.py")

#: (name, pattern): each a way a stage record used to be read by string key
PATTERNS = (
    ("manifest[...]", re.compile(r"""\b(manifest|m|man)\[["']""")),
    ("ckpt[...]", re.compile(r"""\b(ckpt|ck|best|last|tck|sck|resume_ckpt|teacher_ckpt)\[["']""")),
    ("ckpt.get(...)", re.compile(r"""\b(ckpt|ck|tck|sck|teacher_ckpt)\.get\(["']""")),
    ("record[...]", re.compile(r"""\.(provenance|quantization|accuracy|gate|calibration_record)\[["']""")),
    ("record.get(...)", re.compile(r"""\.(provenance|quantization|accuracy)\.get\(["']""")),
    ("extra gate/rung", re.compile(r"""extra(\.get\(|\[)["'](gate|rung)["']""")),
    ("quantize result[...]", re.compile(r"""\b(rec|q_ort|q_ov|q_acc|record)\[["'](rungs|gate|accepted|passed|outcome|"""
                                        r"""replaced|ended_lower|accepted_precision)["']""")),
    ("artifact id literal", re.compile(r"""["']onnx-(fp32|fp16|int8)["']""")),
)


def offences(repo: Path = REPO) -> list[str]:
    """``path:line: [pattern] text`` for every match outside the record layer."""
    out = []
    for folder in FOLDERS:
        for path in sorted((repo / folder).rglob("*.py")):
            rel = path.relative_to(repo).as_posix()
            if rel.startswith(EXEMPT):
                continue
            for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                for name, pat in PATTERNS:
                    if pat.search(code):
                        out.append(f"{rel}:{no}: [{name}] {line.strip()}")
    return out


if __name__ == "__main__":
    found = offences(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO)
    print("\n".join(found))
    print(f"{len(found)} string-key reads of stage records outside the record layer ({', '.join(EXEMPT)})")
