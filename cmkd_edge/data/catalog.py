"""The in-memory form every layout loads into: ids, labels, raw source arrays, shipped splits.

Patch datasets here are small (200 EuroSAT patches are 42 MB as float32), so a layout reads every file
once into stacked arrays; datasets for train/val/test are index views of one cached catalog, and a
training epoch never touches the disk.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from cmkd_edge.errors import DataError


@dataclasses.dataclass
class Catalog:
    """Everything a layout read from disk (or generated).

    Attributes:
        layout: ``eurosat-ms``, ``bigearthnet-npz``, ``bigearthnet-geotiff``, ``paired``, ``synthetic``.
        path: where it came from (None for synthetic).
        ids: one stable id per sample (relative file path or patch name).
        labels: ``(N,)`` int64 class indices or ``(N, K)`` float32 multi-hot.
        class_names: K names.
        task: ``multiclass`` or ``multilabel``.
        sources: ``{"s2": (N, B, H, W) float32, "s1": (N, 2, H, W) float32 dB}``.
        band_names: band names per source, in array order.
        source_units: units of the raw files per source (s1 arrays are always stored in dB).
        splits: ``(N,)`` split names shipped with the data, or None.
        synthetic: True for generated data.
        notes: remarks for ``describe()`` (e.g. patches dropped).
    """

    layout: str
    path: str | None
    ids: list[str]
    labels: np.ndarray
    class_names: list[str]
    task: str
    sources: dict[str, np.ndarray]
    band_names: dict[str, tuple[str, ...]]
    source_units: dict[str, str]
    splits: np.ndarray | None = None
    synthetic: bool = False
    notes: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if n == 0:
            raise DataError(f"no samples found in {self.path}")
        if len(set(self.ids)) != n:
            raise DataError(f"duplicate sample ids in {self.path}")
        for name, arr in self.sources.items():
            if arr.shape[0] != n or arr.ndim != 4:
                raise DataError(f"source {name!r} of {self.path} has shape {arr.shape}, "
                                f"expected ({n}, B, H, W)")
            if arr.shape[1] != len(self.band_names[name]):
                raise DataError(f"source {name!r} of {self.path} has {arr.shape[1]} bands but "
                                f"{len(self.band_names[name])} band names")


def stack_patches(arrays: list[np.ndarray], paths: list[str], what: str) -> np.ndarray:
    """Stack ``(B, H, W)`` patches into ``(N, B, H, W)``; a size mismatch names the odd file."""
    # the most common shape is the reference, so the message names the odd file, not the first one
    shapes = Counter(a.shape for a in arrays)
    first = max(shapes, key=lambda sh: (shapes[sh], -[a.shape for a in arrays].index(sh)))
    for arr, path in zip(arrays, paths, strict=True):
        if arr.shape != first:
            raise DataError(f"{path} has shape {arr.shape}, expected {first} like the other {what}")
    return np.stack(arrays).astype(np.float32, copy=False)
