"""``open_split``: one split of a dataset as numpy arrays of co-registered views, without torch.

The torch ``Dataset`` (``cmkd_edge.data.dataset.ViewDataset``) adds only ``ds[i]`` as tensors on top
of :class:`ViewSplit`; everything else (splits, views, labels, the per-sample generator) lives here so
the device's ``evaluate BUNDLE`` reads a labelled dataset on the base install exactly as training
does. Random parts of a sample (sar-sim speckle, augmentation) come
from a generator seeded by (seed, sample index): evaluation is reproducible, and with
``augment=True`` the stream also depends on the epoch (``set_epoch``, or the DataLoader worker seed
and a per-sample visit count), so speckle and flips are fresh every epoch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmkd_edge.data.augment import augmented_views
from cmkd_edge.data.catalog import Catalog
from cmkd_edge.data.labels import hide_labels, labelled_mask
from cmkd_edge.data.layouts import load_catalog
from cmkd_edge.data.splits import (
    SPLITS,
    normalise_split,
    read_split_file,
    resolve_split_file,
    stratified_split,
    write_split_file,
)
from cmkd_edge.data.views import Sample, View, parse_view
from cmkd_edge.errors import ConfigError, DataError

ViewSpec = str | View


class ViewSplit:
    """One split of a catalog, yielding the requested views of each sample.

    Attributes:
        class_names: class names, index = label.
        task: ``"multiclass"`` or ``"multilabel"``.
        labels: this split's labels, ``(N,)`` int64 or ``(N, K)`` float32.
        views: ``{name: View}`` bound to this data's bands.
        source_band_names: band names per raw source, in file order.
        source_units: units of the raw files per source.
        ids: this split's sample ids.
        indices: this split's positions in the full catalog.
        labelled: ``(N,)`` bool, which samples carry a label (:data:`~cmkd_edge.data.labels.UNLABELLED`
            marks the others in ``labels``).
        true_labels: the labels as the data has them, before :meth:`hide_labels` (an experiment's
            hidden labels stay here for oracle pairings and reports; never used as training targets).
    """

    def __init__(self, catalog: Catalog, views: dict[str, View], split: str,
                 split_names: np.ndarray, split_origin: str, seed: int = 0,
                 augment: bool = False) -> None:
        self.catalog = catalog
        self.views = views
        self.split = split
        self.seed = int(seed)
        self.augment = bool(augment) and split == "train"
        self._split_names = split_names
        self.split_origin = split_origin
        self.indices = (np.arange(len(catalog.ids)) if split == "all"
                        else np.flatnonzero(split_names == split))
        if len(self.indices) == 0:
            raise DataError(f"split {split!r} is empty in {catalog.path} ({split_origin})")
        self.class_names = list(catalog.class_names)
        self.task = catalog.task
        self.labels = catalog.labels[self.indices]
        self.true_labels = self.labels
        self.labelled = labelled_mask(self.labels)
        if split in ("val", "test") and not self.labelled.all():
            first = catalog.ids[int(self.indices[np.flatnonzero(~self.labelled)[0]])]
            raise DataError(f"split {split!r} of {catalog.path} holds {int((~self.labelled).sum())} "
                            f"unlabelled sample(s), e.g. {first!r} ({split_origin})",
                            "validation and test need labels: put unlabelled samples in the train split")
        self.source_band_names = dict(catalog.band_names)
        self.source_units = dict(catalog.source_units)
        self.ids = [catalog.ids[i] for i in self.indices]
        self.epoch = 0
        self._visits = np.zeros(len(self.indices), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    # -- numpy access (stats, calibration, the runtime's tests) ----------------------------------
    def sample(self, i: int) -> Sample:
        """Raw source arrays of item ``i`` (no view, no augmentation)."""
        g = self.indices[i]
        return Sample({s: a[g] for s, a in self.catalog.sources.items()}, self.source_band_names)

    def rng(self, i: int) -> np.random.Generator:
        """The generator for item ``i``: fixed by (seed, index) unless augmenting."""
        g = int(self.indices[i])
        if not self.augment:
            return np.random.default_rng([self.seed, g])
        self._visits[i] += 1
        return np.random.default_rng([self.seed, g, self.epoch, int(self._visits[i]), self._worker_seed()])

    def _worker_seed(self) -> int:
        """The loader worker's seed (0 here: one process; the torch Dataset reads its worker's)."""
        return 0

    def view_arrays(self, i: int) -> dict[str, np.ndarray]:
        """Every view of item ``i`` as numpy ``(C, H, W)`` float32 (augmented if enabled)."""
        sample, rng = self.sample(i), self.rng(i)
        if self.augment:  # each view's own augmentations (View.augment), one draw shared by views
            visit = ((self.seed, int(self.indices[i])), self.epoch)
            return augmented_views(self.views, sample, rng, visit=visit)
        return {name: view(sample, rng) for name, view in self.views.items()}

    def view_batch(self, view_name: str, items: Sequence[int] | None = None) -> np.ndarray:
        """One view of many items at once, ``(n, C, H, W)`` float32, without augmentation."""
        if view_name not in self.views:
            raise ConfigError(f"view {view_name!r} not in this dataset "
                              f"(has {', '.join(self.views)})")
        pos = np.arange(len(self)) if items is None else np.asarray(items, dtype=np.int64)
        view, g = self.views[view_name], self.indices[pos]
        if view.synthetic and len(pos):
            # why per item: a simulated view draws speckle; each item must get the draws it gets from
            # ``ds[i]`` without augmentation, or evaluate, export parity and the quantization gate
            # would score different (equally valid) realisations of the same test patches
            return np.stack([view(self.sample(int(p)), np.random.default_rng([self.seed, int(gi)]))
                             for p, gi in zip(pos, g, strict=True)])
        batch = Sample({s: a[g] for s, a in self.catalog.sources.items()}, self.source_band_names)
        return view(batch, np.random.default_rng([self.seed, 7]))

    def hide_labels(self, keep: np.ndarray) -> None:
        """Forget the labels of every sample outside ``keep`` (bool mask over this split).

        The few-label experiment: hidden samples become unlabelled (``labels`` -1), their true labels
        stay in :attr:`true_labels` for oracle pairings and reports.
        """
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (len(self),):
            raise ValueError(f"keep mask has shape {keep.shape}, expected ({len(self)},)")
        self.labels = hide_labels(self.true_labels, keep & self.labelled)
        self.labelled = labelled_mask(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Make augmentation/speckle depend on ``epoch`` (call once per epoch, like DistributedSampler).

        The per-sample visit count restarts too, so the draws are a function of (seed, epoch) alone
        and a run resumed at epoch k draws exactly what an uninterrupted run draws there.
        """
        self.epoch = int(epoch)
        self._visits[:] = 0

    # -- reporting ---------------------------------------------------------------------------------
    @property
    def synthetic(self) -> bool:
        """True if the data or any view is synthetic."""
        return self.catalog.synthetic or any(v.synthetic for v in self.views.values())

    @property
    def split_table(self) -> list[tuple[str, str]]:
        """``(sample_id, split)`` for every sample of the data (all splits)."""
        return list(zip(self.catalog.ids, self._split_names.tolist(), strict=True))

    def write_split_file(self, path: str | os.PathLike[str]) -> Path:
        """Write :attr:`split_table` as ``sample_id,split`` CSV (a directory means its split.csv)."""
        return write_split_file(path, self.split_table)

    def describe(self) -> dict[str, Any]:
        """What a checkpoint stores about its data: layout, path, split, counts, synthetic flags."""
        counts = {s: int((self._split_names == s).sum()) for s in SPLITS}
        synthetic_views = [n for n, v in self.views.items() if v.synthetic]
        return {
            "layout": self.catalog.layout,
            "path": self.catalog.path,
            "split": self.split,
            "n": len(self),
            "n_labelled": int(self.labelled.sum()),
            "n_per_split": counts,
            "split_origin": self.split_origin,
            "seed": self.seed,
            "augment": self.augment,
            "task": self.task,
            "num_classes": len(self.class_names),
            "views": {n: v.info() for n, v in self.views.items()},
            "source_band_names": {k: list(v) for k, v in self.source_band_names.items()},
            "source_units": dict(self.source_units),
            "synthetic": self.synthetic,
            "synthetic_data": self.catalog.synthetic,
            "synthetic_views": synthetic_views,
            "notes": list(self.catalog.notes),
        }

    def __repr__(self) -> str:
        tag = " SYNTHETIC" if self.synthetic else ""
        return (f"{type(self).__name__}({self.catalog.layout}{tag}, split={self.split}, n={len(self)}, "
                f"views={list(self.views)})")


def _assign_splits(catalog: Catalog, seed: int, split_file: str | os.PathLike[str] | None
                   ) -> tuple[np.ndarray, str]:
    if split_file is not None:
        sf = resolve_split_file(split_file)
        if sf.is_file():
            return read_split_file(sf, catalog.ids), f"split file {sf}"
    if catalog.splits is not None:
        origin = "generator" if catalog.synthetic else "labels.csv"
        return catalog.splits, f"shipped with the data ({origin})"
    names = stratified_split(catalog.labels, seed)
    if split_file is not None:
        write_split_file(split_file, zip(catalog.ids, names.tolist(), strict=True))
    return names, f"stratified 60/20/20, seed {seed}"


def open_split(path: str | os.PathLike[str] | None = None,
               views: Iterable[ViewSpec] | ViewSpec = ("ms",), split: str = "train",
               seed: int = 0, augment: bool = False,
               split_file: str | os.PathLike[str] | None = None, cls: type[ViewSplit] | None = None) -> ViewSplit:
    """Open one split of a dataset with the given views.

    Args:
        path: dataset folder/file, or None / ``"synthetic"`` for the built-in synthetic data.
        views: view specs (``"ms"``, ``"rgb"``, ``"bands:B02,B03"``, ``"sar"``, ``"sar-sim"``).
        split: ``train``, ``val``, ``test`` or ``all``.
        seed: seeds the split when the data has none, and sar-sim speckle / augmentation.
        augment: each view's training augmentations (train split only): flips and 90-degree
            rotations for optical/Sentinel-1 views, random crops for radar chip views.
        split_file: a split CSV (or run dir) to reuse if it exists; else a drawn split is written
            there.
        cls: the class to build (default :class:`ViewSplit`; ``open_dataset`` passes the torch one).

    Raises:
        DataError: unreadable or inconsistent data, a view the data cannot provide, an empty split.
        UnknownNameError: an unknown view or band name.
    """
    catalog = load_catalog(path)
    specs = [views] if isinstance(views, str | View) else list(views)
    if not specs:
        raise ConfigError("open_dataset needs at least one view")
    bound: dict[str, View] = {}
    where = catalog.path or "the data"
    for spec in specs:
        view = parse_view(spec) if isinstance(spec, str) else spec
        bound[view.name] = view.bind(catalog.band_names, where=where,
                                     source_units=catalog.source_units)
    split = normalise_split(split)
    names, origin = _assign_splits(catalog, seed, split_file)
    return (cls or ViewSplit)(catalog, bound, split, names, origin, seed=seed, augment=augment)
