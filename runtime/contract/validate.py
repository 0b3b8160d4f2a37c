"""Check raw sensor input against the manifest's input spec before it reaches a backend.

Why here and not in the backends: every backend fails differently (or silently) on a wrong band
count, a uint16 array or NaNs; one check gives one clear message naming what was expected.

Policies for invalid pixels (NaN, +-Inf, or equal to the nodata value):

* ``"reject"`` (default for ``Classifier.predict``): raise :class:`InputMismatchError` naming how
  many patches are affected and the first one.
* ``"mask"`` (default for scenes): the affected patches are zero-filled before inference and flagged
  in ``Validated.valid``; the caller turns their output into nodata (NaN probabilities, class 255).

Integer sensor dtypes are cast to float32: 8/16-bit integers exactly; 32/64-bit integers only when
every value is within +-2**24 (float32's exact integer range), else the cast would silently change
values and is refused. Values that look like the wrong units (linear backscatter where dB is
expected, reflectance scaled 0-1 where 0-10000 is expected, more than half of the values outside
``input.expected_range``; the one rule of :mod:`.units`, which quantize applies as a refusal)
give a :class:`UnitsWarning` (python ``warnings``) and a log record; the
input is still run because the heuristics can be wrong for an unusual patch.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from cmkd_edge.errors import ConfigError, InputMismatchError

from .specs import InputSpec
from .units import units_problem

log = logging.getLogger("cmkd_edge.runtime")
POLICIES = ("reject", "mask")
_EXACT_INT = 1 << 24


class UnitsWarning(UserWarning):
    """Input values look like different units than the model was trained on."""


@dataclass(frozen=True)
class Validated:
    """float32 (N, C, H, W) C-contiguous input, and per-patch validity (None = all valid)."""

    x: np.ndarray
    valid: np.ndarray | None = None


def to_float32(x: np.ndarray, what: str = "input") -> np.ndarray:
    """Cast sensor values to float32 without silently changing them."""
    kind = x.dtype.kind
    if x.dtype == np.float32:
        return x
    if kind == "f":
        return x.astype(np.float32)
    if kind in "iu":
        if x.dtype.itemsize > 2 and x.size:
            lo, hi = int(x.min()), int(x.max())
            if lo < -_EXACT_INT or hi > _EXACT_INT:
                raise InputMismatchError(
                    f"{what} has {x.dtype} values in [{lo}, {hi}], beyond float32's exact integer "
                    f"range (+-{_EXACT_INT})", "rescale to the model's units first")
        return x.astype(np.float32)
    raise InputMismatchError(f"{what} has dtype {x.dtype}, expected float32 or an integer sensor dtype")


def validate_input(x: np.ndarray, spec: InputSpec, *, nodata_policy: str = "reject",
                   nodata: float | None = None, check_units: bool = True,
                   what: str = "input") -> Validated:
    """Validate and convert raw input (C, H, W) or (N, C, H, W) for the model of ``spec``.

    Args:
        x: raw sensor values, bands in ``spec.band_names`` order.
        nodata_policy: "reject" or "mask" (see module docstring).
        nodata: nodata value to use instead of ``spec.nodata`` (e.g. the GeoTIFF's).

    Raises:
        InputMismatchError: wrong rank, band count, size or dtype; invalid pixels under "reject".
    """
    if nodata_policy not in POLICIES:
        raise ConfigError(f"unknown nodata policy {nodata_policy!r}", f"choose one of: {', '.join(POLICIES)}")
    x = np.asarray(x)
    given = tuple(x.shape)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise InputMismatchError(f"{what} has shape {list(x.shape)}, expected (N, C, H, W) or (C, H, W)")
    if x.shape[1] != spec.channels:
        if x.shape[3] == spec.channels:  # (N, H, W, C): the usual numpy/PIL/TF layout
            raise InputMismatchError(
                f"{what} has shape {given}, which looks channels-last (bands on the last axis); "
                f"the model expects bands first, ({spec.channels}, H, W) or (N, {spec.channels}, H, W)",
                "transpose it, e.g. np.moveaxis(x, -1, -3)")
        raise InputMismatchError(
            f"{what} has {x.shape[1]} bands, the model expects {spec.channels} "
            f"({','.join(spec.band_names)})", "select the bands in this order")
    h, w = spec.shape[2], spec.shape[3]
    if (h is not None and x.shape[2] != h) or (w is not None and x.shape[3] != w):
        smaller = (h is not None and x.shape[2] < h) or (w is not None and x.shape[3] < w)
        raise InputMismatchError(
            f"{what} is {x.shape[2]}x{x.shape[3]} pixels, the model expects {h}x{w}",
            f"resample or pad it to {h}x{w}; only larger images can be tiled as a scene" if smaller else
            "classify a larger image as a scene: a GeoTIFF with --out (classify_scene), or crop it "
            f"into {h}x{w} patches")
    if x.shape[0] == 0:
        raise InputMismatchError(f"{what} is an empty batch")
    x = np.ascontiguousarray(to_float32(x, what))
    lo, hi = float(x.min()), float(x.max())
    nodata = spec.nodata if nodata is None else nodata
    valid = None
    finite = bool(np.isfinite(lo) and np.isfinite(hi))  # NaN propagates into min/max
    # why "not finite or in range": with a NaN anywhere in the batch lo/hi are NaN and say nothing
    # about where nodata lies, so every patch is compared with nodata directly; the range test is
    # only a shortcut when lo/hi are real numbers.
    check_nodata = (nodata is not None and not np.isnan(nodata)
                    and (not finite or lo <= nodata <= hi))
    if not finite or check_nodata:
        bad = ~np.isfinite(x).all(axis=(1, 2, 3))
        if check_nodata:
            bad |= (x == np.float32(nodata)).any(axis=(1, 2, 3))
        if bad.any():
            if nodata_policy == "reject":
                which = "NaN/Inf or nodata" + (f" ({nodata:g})" if nodata is not None else "")
                raise InputMismatchError(
                    f"{what}: {int(bad.sum())} of {len(bad)} patches contain {which} pixels "
                    f"(first: patch {int(np.argmax(bad))})",
                    "clean the input, or use nodata_policy='mask' to output nodata for them")
            valid = ~bad
            x = x.copy()  # never modify the caller's array
            x[bad] = 0.0
            if valid.any():
                sel = x[valid]
                lo, hi = float(sel.min()), float(sel.max())
    if check_units and (valid is None or valid.any()):
        msg = units_problem(x if valid is None else x[valid], spec.units, spec.expected_range, what, lo, hi)
        if msg:
            warnings.warn(msg, UnitsWarning, stacklevel=3)
            log.warning(msg)
    return Validated(x, valid)
