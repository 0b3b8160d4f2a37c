"""Budget options as users type them (``5``, ``5ms``, ``0.5 s``, ``20MiB``, ``1GB``, ``90%``), and the
check of one candidate against the budget.

Why units are parsed and not just floats: a budget typed as ``--max-size-mb 1GB`` or
``--max-latency-ms 5s`` read as a bare number would be off by three orders of magnitude and select
silently wrong; an unknown unit is one error line naming the option and the units it takes.
"""

from __future__ import annotations

import re
from typing import Any

from cmkd_edge.errors import ConfigError

from .records import Budget, Candidate, Failure

_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµ%]*)\s*$")

#: option -> (unit -> factor to the option's own unit), "" = a bare number
UNITS: dict[str, dict[str, float]] = {
    "--max-latency-ms": {"": 1.0, "ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3},
    "--max-memory-mb": {"": 1.0, "mib": 1.0, "mb": 1e6 / 2**20, "kib": 1 / 1024, "kb": 1e3 / 2**20,
                        "gib": 1024.0, "gb": 1e9 / 2**20},
    "--max-size-mb": {},  # same as memory (filled below)
    "--min-accuracy": {"": 1.0, "%": 1.0},
    "--max-drop": {"": 1.0, "pt": 1.0, "pts": 1.0, "points": 1.0, "pp": 1.0, "%": 1.0},
}
UNITS["--max-size-mb"] = UNITS["--max-memory-mb"]
_SHOWN = {"--max-latency-ms": "ms (default), s or us", "--max-memory-mb": "MiB (default), KiB, GiB, kB, MB or GB",
          "--max-size-mb": "MiB (default), KiB, GiB, kB, MB or GB", "--min-accuracy": "percent (90 or 90%)",
          "--max-drop": "points (1.5, 1.5pt)"}


def parse_amount(option: str, text: str | None) -> float | None:
    """``text`` in the option's unit (ms, MiB, percent, points); None when not given.

    Raises:
        ConfigError: not a number, an unknown unit, a negative limit, or an accuracy written as a
            fraction (``0.9``: percent is asked for, and 0.9 % would be a budget nobody means).
    """
    if text is None:
        return None
    m = _NUMBER.match(text)
    if m is None:
        raise ConfigError(f"{option} {text!r} is not a number with an optional unit",
                          f"e.g. {option} 5; units: {_SHOWN[option]}")
    value, unit = float(m.group(1)), m.group(2)
    factor = UNITS[option].get(unit.lower() if unit != "µs" else unit)
    if factor is None:
        raise ConfigError(f"{option} {text!r}: unknown unit {unit!r}", f"use {_SHOWN[option]}")
    value *= factor
    if value < 0 or (value == 0 and option != "--max-drop"):
        raise ConfigError(f"{option} {text!r} must be positive")
    if option == "--min-accuracy" and (value <= 1.0 and unit != "%" or value > 100.0):
        raise ConfigError(f"--min-accuracy {text!r}: give percent between 1 and 100",
                          "e.g. --min-accuracy 90 for 90 % (not 0.9)")
    return value


def make_budget(percentile: str, **given: str | None) -> Budget:
    """The budget from the CLI's strings (keys = option names without ``--``, dashes as underscores)."""
    values: dict[str, Any] = {k: parse_amount("--" + k.replace("_", "-"), v) for k, v in given.items()}
    return Budget(percentile=percentile, **values)  # type: ignore[arg-type]


def _over(name: str, value: float | None, limit: float, unit: str, higher_is_better: bool,
          what: str) -> Failure | None:
    if value is None:
        return Failure(constraint=name, limit=limit, unit=unit, text=f"{what} not measured here")
    miss = (limit - value) if higher_is_better else (value - limit)
    if miss <= 1e-12:
        return None
    rel = "" if limit <= 0 else f", {value / limit:.2f}x the limit" if not higher_is_better else ""
    return Failure(constraint=name, limit=limit, unit=unit, value=value, over=miss,
                   text=f"{what} {value:.3g} {unit} is {miss:.3g} {unit} "
                        f"{'below' if higher_is_better else 'over'} the limit {limit:g} {unit}{rel}")


def failures(c: Candidate, budget: Budget) -> tuple[Failure, ...]:
    """Every constraint of ``budget`` that ``c`` misses (empty: it fits). Point estimates decide;
    the intervals are shown beside them (a budget is a limit on what the device will see)."""
    out: list[Failure | None] = []
    p = budget.percentile
    if budget.max_latency_ms is not None:
        out.append(_over(f"{p}_latency", c.latency_ms.get(p), budget.max_latency_ms, "ms", False,
                         f"{p} latency (batch {c.batch}, {c.threads} thread{'s' if c.threads > 1 else ''})"))
    if budget.max_memory_mb is not None:
        out.append(_over("memory", c.memory_mb, budget.max_memory_mb, "MiB", False, "memory added"))
    if budget.max_size_mb is not None:
        out.append(_over("size", c.size_mb, budget.max_size_mb, "MiB", False, "size"))
    if budget.min_accuracy is not None:
        out.append(_over("accuracy", c.accuracy, budget.min_accuracy, "%", True,
                         f"{c.metric} ({c.split}, n={c.n})"))
    if budget.max_drop is not None:
        out.append(_over("drop", c.drop, budget.max_drop, "points", False,
                         f"drop vs its FP32 ({c.split}, n={c.n})"))
    return tuple(f for f in out if f is not None)


def shortfall(fails: tuple[Failure, ...]) -> tuple[int, float]:
    """How far a candidate is from fitting: (constraints missed, sum of relative misses) - the
    order of the nearest candidates when none fits."""
    rel = sum(1.0 if f.over is None else f.over / f.limit if f.limit > 0 else f.over for f in fails)
    return len(fails), rel
