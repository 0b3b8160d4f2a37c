"""Wrong-units detection: the one rule both quantize (refuses) and the runtime (warns) apply.

Why one function: the check existed twice and disagreed (quantize failed when more than half of
the values were out of range, the runtime warned only when all were), so data quantize refused
could run silently and vice versa. It lives in the runtime because ``export/`` may import the
runtime but never the reverse. Numpy and stdlib only.

The rule, first match wins (``units_problem``):

* ``reflectance_x1e4`` with 0 < max <= 1.5: reflectance scaled 0-1 instead of x 10000;
* ``db`` with every value >= 0 (and some > 0): linear backscatter power instead of dB;
* ``linear`` with any negative value: dB instead of linear power (power cannot be negative);
* ``magnitude_u8`` (8-bit SAR magnitude chips, 0-255: neither dB nor linear power) with a negative
  value (dB), with 0 < max <= 1.5 (magnitude scaled 0-1), or with max > 255 (not 8-bit: linear
  power or a 16-bit product);
* ``db`` or ``linear`` data that looks like 8-bit magnitude (whole numbers in 0-255 with some above
  1): the message names 8-bit magnitude as the likely units;
* more than half of the values outside ``expected_range`` (which includes "all of them").

Policy (callers): quantize refuses such calibration/validation data (a calibration set in the
wrong units silently produces a useless INT8 model); the runtime warns and still runs, because
one unusual patch (cloud, shadow, water) can trip a heuristic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Plausible raw value ranges per unit: optical L1C/L2A reflectance x1e4 exceeds 10000 over clouds
# and snow; SAR backscatter lies in about -60..+40 dB.
EXPECTED_RANGE: dict[str, tuple[float, float]] = {
    "reflectance_x1e4": (0.0, 20000.0),
    "db": (-60.0, 40.0),
    "linear": (0.0, 10000.0),
    "magnitude_u8": (0.0, 255.0),
}
_U8 = "8-bit SAR magnitude (0-255 amplitude, neither dB nor linear power)"
MAX_FRACTION_OUTSIDE = 0.5


def fraction_outside(x: np.ndarray, expected_range: Sequence[float] | None,
                     lo: float | None = None, hi: float | None = None) -> float:
    """Share of values outside ``expected_range`` (0.0 without one; no pass when min/max fit)."""
    if expected_range is None or x.size == 0:
        return 0.0
    elo, ehi = float(expected_range[0]), float(expected_range[1])
    lo = float(x.min()) if lo is None else lo
    hi = float(x.max()) if hi is None else hi
    if lo >= elo and hi <= ehi:  # the common case costs nothing beyond min/max
        return 0.0
    return float(((x < elo) | (x > ehi)).mean())


def units_problem(x: np.ndarray, units: str, expected_range: Sequence[float] | None,
                  what: str = "input", lo: float | None = None, hi: float | None = None
                  ) -> str | None:
    """A message if finite raw values ``x`` look like other units than ``units``, else None.

    ``lo``/``hi`` may pass an already computed min/max of ``x``.
    """
    if x.size == 0:
        return None
    lo = float(x.min()) if lo is None else float(lo)
    hi = float(x.max()) if hi is None else float(hi)
    if units == "reflectance_x1e4" and 0 < hi <= 1.5:
        return (f"{what} values lie in [{lo:.3g}, {hi:.3g}]: this looks like reflectance scaled 0-1, "
                "but the model expects reflectance x 10000 (0-10000)")
    if units == "magnitude_u8":
        if lo < 0:
            return (f"{what} has negative values (min {lo:.3g}): this looks like dB, but the model "
                    f"expects {_U8}")
        if 0 < hi <= 1.5:
            return (f"{what} values lie in [{lo:.3g}, {hi:.3g}]: this looks like magnitude scaled 0-1, "
                    f"but the model expects {_U8}")
        if hi > 255:
            return (f"{what} values reach {hi:.4g}: this looks like linear power or a 16-bit product, "
                    f"but the model expects {_U8}")
    if units in ("db", "linear") and lo >= 0 and hi > 1.5 and hi <= 255 and _whole(x):
        return (f"{what} values are whole numbers in [{lo:.3g}, {hi:.3g}]: this looks like {_U8}, "
                f"but the model expects {'dB (10*log10 of power)' if units == 'db' else 'linear power'}")
    if units == "db" and lo >= 0 and hi > 0:
        return (f"{what} values are all >= 0 ([{lo:.3g}, {hi:.3g}]): this looks like linear "
                "backscatter, but the model expects dB (10*log10 of power)")
    if units == "linear" and lo < 0:
        return (f"{what} has negative values (min {lo:.3g}): this looks like dB, but the model "
                "expects linear backscatter power")
    outside = fraction_outside(x, expected_range, lo, hi)
    if outside > MAX_FRACTION_OUTSIDE:
        elo, ehi = expected_range  # type: ignore[misc]
        return (f"{what} values [{lo:.4g}, {hi:.4g}]: {outside:.0%} lie outside the expected range "
                f"[{elo:.4g}, {ehi:.4g}] for units {units!r}")
    return None


def _whole(x: np.ndarray) -> bool:
    """True when every value is a whole number (an 8-bit product read as float)."""
    return bool(np.all(np.asarray(x, dtype=np.float32) == np.round(x)))


def synthetic_batch(units: str, channels: int, hw: tuple[int, int], batch: int, seed: int = 0,
                    expected_range: Sequence[float] | None = None) -> np.ndarray:
    """Random raw input, uniform within the plausible range of ``units`` (never trips the
    wrong-units rule): for timing, compile checks and parity when no real data can be read."""
    lo, hi = expected_range or EXPECTED_RANGE.get(units, (0.0, 1.0))
    if units == "reflectance_x1e4" and hi <= 1.5:
        hi = 10000.0
    shape = (batch, channels, int(hw[0]), int(hw[1]))
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(np.float32)
