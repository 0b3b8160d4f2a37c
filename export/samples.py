"""Raw deploy-time inputs from a dataset: what the exported graph takes, with labels.

The graph takes the raw source bands (e.g. all 13 Sentinel-2 bands for an RGB student), not the
view the network was trained on, so calibration, parity and the accuracy gate all need samples in
that form. They are read through the data layer (``open_dataset``) with a view that yields exactly
the source bands in the spec's order: ``bands:<source_bands>`` for optical; ``sar`` (real
Sentinel-1, dB) or, on optical-only data, the checkpoint's own ``sar-sim`` view for SAR (marked
synthetic). Linear-power deployments get dB converted back to linear power.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cmkd_edge.runtime.contract import units as _units
from cmkd_edge.runtime.contract.manifest import Manifest
from cmkd_edge.runtime.contract.specs import InputSpec, PreprocessSpec

from cmkd_edge.errors import DataError, ExportValidationError


@dataclass
class RawSamples:
    """Raw inputs (N, C, H, W) float32 in source units, labels, and where they came from."""

    x: np.ndarray
    labels: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.x))

    def sha256(self) -> str:
        """Hash of the exact arrays (shape, dtype, bytes): the calibration set's identity."""
        h = hashlib.sha256()
        for arr in (self.x, self.labels):
            a = np.ascontiguousarray(arr)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def top1_labels(self) -> np.ndarray:
        """Class index per sample (multi-hot labels: their first positive class)."""
        return self.labels if self.labels.ndim == 1 else self.labels.argmax(1)


@dataclass(frozen=True)
class Recorded:
    """How the training run drew its data, as export recorded it in ``provenance.data``.

    ``path`` None is the synthetic default; ``split_file`` is the run's split table copied into the
    bundle (absolute path while the bundle is open), None when the bundle predates it.
    """

    path: str | None = None
    seed: int = 0
    split_file: Path | None = None
    known: bool = False  # False: an old bundle without provenance.data

    @classmethod
    def from_manifest(cls, manifest: Manifest, root: Path | None) -> Recorded:
        rec = manifest.provenance.data
        if rec is None:
            return cls()
        rel = rec.split_file
        return cls(path=rec.path, seed=rec.seed or 0,
                   split_file=(root / rel) if rel and root is not None else None, known=True)


def _deploy_views(spec: PreprocessSpec, ckpt_view: str) -> list[str]:
    """The data-layer views that yield the spec's raw input: recorded in the spec by the view that
    made it; derived from the view's name only for a spec written before that (older checkpoints
    and bundles)."""
    if spec.sample_views:
        return list(spec.sample_views)
    if spec.source == "chip":
        # the whole raw chip (no crop, no log scale: the graph does those); for edge-radar the
        # degraded chip the cheaper sensor delivers (synthetic, recorded as such)
        from cmkd_edge.data.views import parse_view

        return [getattr(parse_view(ckpt_view), "raw_spec", "chip")]
    if spec.source == "s2":
        return ["bands:" + ",".join(spec.source_bands)]
    return ["sar", ckpt_view] if ckpt_view != "sar" else ["sar"]


def ds_view_name(ds: Any, spec: str) -> str:
    """The dataset's key for the view opened from ``spec`` (the only view it holds)."""
    return spec if spec in ds.views else next(iter(ds.views))


def load_raw_samples(data: str | None, spec: PreprocessSpec, ckpt_view: str, split: str,
                     n: int | None = None, seed: int = 0, split_file: str | None = None,
                     sample_seed: int | None = None) -> RawSamples:
    """Read ``split`` of ``data`` as raw deploy inputs; ``n`` picks a stratified subset.

    ``seed`` opens the dataset (it draws the split when the data has none, and sar-sim speckle), so
    it must be the training run's seed; ``sample_seed`` (default ``seed``) picks the subset.
    The views come from the spec (``sample_views``); ``ckpt_view``, the trained view's name, is
    read only for a spec written before they were recorded.

    Raises:
        DataError: the data cannot provide the deployed source, or the split is empty.
    """
    from cmkd_edge.data.split_views import open_split
    from cmkd_edge.data.splits import stratified_indices

    last: Exception | None = None
    for view in _deploy_views(spec, ckpt_view):
        try:
            ds = open_split(data, views=[view], split=split, seed=seed, augment=False,
                            split_file=split_file)
            break
        except DataError as exc:
            last = exc
    else:
        raise DataError(f"{data or 'synthetic data'} cannot provide the deployed "
                        f"{spec.source} input ({last.message if last else ''})")
    if len(ds) == 0:
        raise DataError(f"split {split!r} of {data or 'synthetic data'} is empty")
    labels = np.asarray(ds.labels)
    idx = np.arange(len(ds)) if n is None or n >= len(ds) else stratified_indices(
        labels, n, seed if sample_seed is None else sample_seed)
    x = np.asarray(ds.view_batch(ds_view_name(ds, view), idx), dtype=np.float32)
    if spec.source == "s1" and spec.source_units == "linear":
        x = np.power(10.0, x / 10.0, dtype=np.float32)  # data layer yields dB; device feeds power
    desc = ds.describe() if hasattr(ds, "describe") else {}
    info = {"data": str(data) if data else "synthetic", "split": split, "view": view,
            "class_names": [str(c) for c in ds.class_names],
            "n": int(len(idx)), "of": int(len(ds)), "stratified": n is not None and n < len(ds),
            "seed": seed, "sample_seed": seed if sample_seed is None else sample_seed,
            "split_origin": desc.get("split_origin"),
            "synthetic": bool(desc.get("synthetic", data in (None, "synthetic"))
                              or view.startswith(("sar-sim", "edge-radar")))}
    return RawSamples(x=x, labels=labels[idx], info=info)


def check_raw_batch(x: np.ndarray, inp: InputSpec, what: str) -> dict[str, float]:
    """Check a raw batch against the bundle's input spec: channel count, finiteness, value range.

    Returns the observed min/max/fraction outside the expected range (recorded in the manifest).

    Raises:
        ExportValidationError: wrong rank or channel count, non-finite values, or values that
            look like other units (``cmkd_edge.runtime.contract.units.units_problem``: the rule the
            runtime warns with, applied here as a refusal).
    """
    bands = inp.band_names
    if x.ndim != 4 or x.shape[1] != len(bands):
        raise ExportValidationError(
            f"{what} has shape {tuple(x.shape)} (expected (N, {len(bands)}, H, W) for bands "
            f"{','.join(bands)})", "use data of the student's modality and source bands")
    if not np.isfinite(x).all():
        raise ExportValidationError(f"{what} contains NaN or Inf values", "mask or fill nodata first")
    lo, hi = float(x.min()), float(x.max())
    rng = inp.expected_range
    # why the runtime's function: quantize refuses exactly what the runtime warns about
    problem = _units.units_problem(x, inp.units, rng, what, lo, hi)
    if problem:
        raise ExportValidationError(problem, "are the units right?")
    return {"min": lo, "max": hi, "fraction_outside_expected": _units.fraction_outside(x, rng, lo, hi)}


def bundle_samples(bundle: Any, data: str | None, split: str, seed: int = 0) -> Any:
    """Raw labelled inputs of ``split`` for a bundle, as its device takes them (the data layer's
    torch-free half reads them, so this runs on the base install too).

    ``data`` None is the training data export recorded (``provenance.data``). The bundle's copy of
    the training run's split table applies only to that data; other data (an external test set) is
    scored on its own split, or on one drawn with the run's seed when it has none.

    Raises:
        DataError: unreadable data, a source the data cannot provide, an empty split.
        CheckpointError: the data's classes differ from the bundle's.
    """
    from cmkd_edge.runtime.metrics import require_class_names

    from cmkd_edge.data.layouts import same_data
    from cmkd_edge.errors import CheckpointError

    m = bundle.manifest
    rec = Recorded.from_manifest(m, bundle.root)
    path = rec.path if data is None else data
    own = same_data(path, rec.path) and rec.known
    view = m.provenance.view or ""
    table = str(rec.split_file) if own and rec.split_file is not None else None
    raw = load_raw_samples(path, m.preprocess, view, split, seed=rec.seed, split_file=table)
    raw.info["split_table"] = "training run (bundle split.csv)" if table else "the data's own"
    require_class_names(raw.info.get("class_names"), list(m.class_names), CheckpointError,
                        "the data's classes ({got}) differ from the bundle's ({want})")
    return raw
