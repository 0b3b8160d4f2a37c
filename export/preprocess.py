"""Deploy-time preprocessing: the numpy reference and the input spec a bundle promises.

The exported graph carries band selection, SAR linear->dB, clipping and per-band normalisation, so
every backend takes raw sensor values. This module is the *reference* for those ops in plain numpy
(tests compare the graph against it; the runtime may reimplement the same five lines, it cannot
import ``export/``), and derives the manifest's ``input`` and ``preprocess`` entries from a
checkpoint's preprocessing spec (docs/architecture.md). Numpy and stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from cmkd_edge.runtime import units as _units

from cmkd_edge.errors import ExportValidationError

DB_FLOOR = 1e-10  # linear power floor before log10: a zero pixel must not become -inf
SPEC_KEYS = ("source", "source_bands", "source_units", "select", "to_db", "clip", "mean", "std")

# Plausible raw value ranges per unit: one table, owned by the runtime's wrong-units check
EXPECTED_RANGE = _units.EXPECTED_RANGE
MODALITY_OF_SOURCE = {"s2": "optical", "s1": "sar"}


def validate_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Check a checkpoint's preprocessing spec is complete and self-consistent; return a plain copy.

    Raises:
        ExportValidationError: a key is missing, ``select`` points outside ``source_bands``, or
            ``mean``/``std`` do not have one entry per selected band.
    """
    missing = [k for k in SPEC_KEYS if k not in spec]
    if missing:
        raise ExportValidationError(f"preprocessing spec lacks {', '.join(missing)}",
                                    "re-save the checkpoint with a current cmkd-edge trainer")
    out = {k: spec[k] for k in SPEC_KEYS}
    bands, sel = list(out["source_bands"]), [int(i) for i in out["select"]]
    if not bands or not sel or any(i < 0 or i >= len(bands) for i in sel):
        raise ExportValidationError(f"preprocessing select {sel} does not index source_bands "
                                    f"({len(bands)} bands)")
    if len(out["mean"]) != len(sel) or len(out["std"]) != len(sel):
        raise ExportValidationError(f"preprocessing mean/std have {len(out['mean'])}/"
                                    f"{len(out['std'])} entries (expected {len(sel)})")
    if out["clip"] is not None and len(out["clip"]) != 2:
        raise ExportValidationError(f"preprocessing clip {out['clip']} is not [lo, hi]")
    out.update(source_bands=bands, select=sel, to_db=bool(out["to_db"]),
               mean=[float(v) for v in out["mean"]], std=[float(v) for v in out["std"]],
               clip=None if out["clip"] is None else [float(v) for v in out["clip"]])
    return out


def reference_preprocess(x: np.ndarray, spec: Mapping[str, Any], normalise: bool = True) -> np.ndarray:
    """What the exported graph does before the network's first layer, in numpy.

    Args:
        x: raw sensor values (N, len(source_bands), H, W) float32.
        spec: the preprocessing spec (``validate_spec``).
        normalise: also apply ``(x - mean) / std`` (the network's InputNorm).
    Returns:
        (N, len(select), H, W) float32.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != len(spec["source_bands"]):
        raise ValueError(f"expected (N, {len(spec['source_bands'])}, H, W), got {x.shape}")
    y = x[:, list(spec["select"])]
    if spec["to_db"]:
        y = np.float32(10.0) * np.log10(np.maximum(y, np.float32(DB_FLOOR)))
    if spec["clip"] is not None:
        y = np.clip(y, np.float32(spec["clip"][0]), np.float32(spec["clip"][1]))
    if normalise:
        mean = np.asarray(spec["mean"], np.float32).reshape(1, -1, 1, 1)
        # same guard as InputNorm: a constant band (std 0) must not divide by zero
        inv_std = (1.0 / np.maximum(np.asarray(spec["std"], np.float32), 1e-6)).reshape(1, -1, 1, 1)
        y = (y - mean) * inv_std.astype(np.float32)
    return y.astype(np.float32, copy=False)


def input_spec(spec: Mapping[str, Any], view_info: Mapping[str, Any], hw: Sequence[int],
               nodata: float | None = None) -> dict[str, Any]:
    """The manifest ``input`` entry: raw source bands, their units, shape with a dynamic batch."""
    units = spec["source_units"]
    modality = view_info.get("modality") or MODALITY_OF_SOURCE.get(spec["source"], "optical")
    rng = EXPECTED_RANGE.get(units)
    return {
        "name": "input", "modality": modality, "band_names": list(spec["source_bands"]),
        "dtype": "float32", "units": units,
        "shape": [None, len(spec["source_bands"]), int(hw[0]), int(hw[1])], "layout": "NCHW",
        "nodata": nodata, "expected_range": None if rng is None else list(rng),
    }


def check_raw_batch(x: np.ndarray, input_entry: Mapping[str, Any], what: str) -> dict[str, float]:
    """Check a raw batch against the manifest ``input`` entry: channel count, finiteness, value range.

    Returns the observed min/max/fraction outside the expected range (recorded in the manifest).

    Raises:
        ExportValidationError: wrong rank or channel count, non-finite values, or values that
            look like other units (``cmkd_edge.runtime.units.units_problem``: the rule the
            runtime warns with, applied here as a refusal).
    """
    bands = input_entry["band_names"]
    if x.ndim != 4 or x.shape[1] != len(bands):
        raise ExportValidationError(
            f"{what} has shape {tuple(x.shape)} (expected (N, {len(bands)}, H, W) for bands "
            f"{','.join(bands)})", "use data of the student's modality and source bands")
    if not np.isfinite(x).all():
        raise ExportValidationError(f"{what} contains NaN or Inf values", "mask or fill nodata first")
    lo, hi = float(x.min()), float(x.max())
    rng = input_entry.get("expected_range")
    # why the runtime's function: quantize refuses exactly what the runtime warns about
    problem = _units.units_problem(x, input_entry["units"], rng, what, lo, hi)
    if problem:
        raise ExportValidationError(problem, "are the units right?")
    return {"min": lo, "max": hi, "fraction_outside_expected": _units.fraction_outside(x, rng, lo, hi)}
