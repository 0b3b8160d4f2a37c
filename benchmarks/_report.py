"""Shared by the benchmark scripts: write one named section of docs/benchmarks.md, keep the others.

Each script owns the section between ``<!-- begin:NAME -->`` and ``<!-- end:NAME -->``; rerunning a
script replaces only its own section, so the file always says which script produced which table.
"""

from __future__ import annotations

import base64
import math
import re
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "benchmarks.md"
SHARED_DATA = ROOT.parent / "shared" / "data"
HEADER = (
    "# Benchmarks\n\n"
    "Every table here is written by a script in `benchmarks/`; rerun the script to regenerate its "
    "section. Ratios are measured side by side in one run on a shared, noisy machine; medians over "
    "repeats.\n"
)


#: Two-sided 95 % quantiles of Student's t by degrees of freedom (1.96 beyond the table).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean of seed-level values (e.g. paired differences) and its 95 % t-interval, in the values'
    units; the bounds are NaN with fewer than two values."""
    mu = statistics.mean(values)
    if len(values) < 2:
        return mu, float("nan"), float("nan")
    half = T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return mu, mu - half, mu + half


def pack_bits(correct: np.ndarray) -> str:
    """Per-sample correctness as base64 packed bits: a run's paired outcomes in a few hundred bytes,
    small enough to commit so a report outlives its run directories."""
    return base64.b64encode(np.packbits(np.asarray(correct, dtype=np.uint8)).tobytes()).decode()


def unpack_bits(text: str, n: int) -> np.ndarray:
    """The inverse of :func:`pack_bits` (``n`` samples)."""
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n].astype(bool)


def machine_line() -> str:
    """One line naming the CPU, its core count and ISA flags (recorded with every table)."""
    from cmkd_edge.runtime.backends.device import cpu_info

    info = cpu_info()
    flags = ", ".join(info["flags_present"]) or "none of interest"
    return f"Machine: {info['model']} ({info['machine']}, {info['logical_cores']} logical cores); CPU flags: {flags}."


def write_section(name: str, body: str) -> Path:
    """Replace (or append) section ``name`` of docs/benchmarks.md with ``body``, atomically."""
    from cmkd_edge.fsutil import atomic_write_text

    text = REPORT.read_text(encoding="utf-8") if REPORT.exists() else HEADER
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python " + " ".join(["benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    block = (
        f"<!-- begin:{name} -->\n{body.rstrip()}\n\n"
        f"_Written by `{cmd}` on {stamp}._\n<!-- end:{name} -->"
    )
    pattern = re.compile(rf"<!-- begin:{re.escape(name)} -->.*?<!-- end:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(REPORT, text)
    return REPORT
