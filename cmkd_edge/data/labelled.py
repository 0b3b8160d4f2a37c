"""Which training samples carry a label: a stratified labelled fraction, and its file in the run dir.

The few-label regime (docs/methods.md s.5) is the one where cross-modal distillation pays: the
student's modality has few labels, and the other samples learn only through their teacher-modality
partner. For experiments, ``--labelled-fraction F --label-seed S`` keeps a stratified fraction of the
train split's labels (at least one per class) and hides the rest; the kept ids go to the run's
``labelled.csv`` so a resumed run - and any other run given that file - sees exactly the same
labels. A user's own unlabelled samples (``unlabelled/`` folders, empty labels) need no file: the
data says which they are. What a run saw is recorded as ``runtime.contract.records.LabelsSeen`` (checkpoint
and bundle provenance).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from cmkd_edge.data.labels import labelled_mask
from cmkd_edge.data.splits import read_csv_rows, strata, write_csv_rows
from cmkd_edge.errors import ConfigError, DataError

LABELLED_FILE = "labelled.csv"


def check_fraction(fraction: float | None) -> None:
    """``None`` (every label) or a fraction in (0, 1].

    Raises:
        ConfigError: 0, negative, above 1, or not a number.
    """
    if fraction is None:
        return
    if not isinstance(fraction, int | float) or not 0.0 < float(fraction) <= 1.0 or fraction != fraction:
        raise ConfigError(f"labelled fraction must be in (0, 1] (got {fraction})",
                          "e.g. --labelled-fraction 0.05 keeps 5 % of the training labels")


def stratified_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Keep ``fraction`` of the labelled samples of each class (at least one), reproducibly.

    Args:
        labels: ``(N,)`` class indices or ``(N, K)`` multi-hot; unlabelled rows are never kept.
        fraction: in (0, 1]; per class ``max(1, round(n_class * fraction))`` are kept.
        seed: the label seed; the same labels, fraction and seed always keep the same samples.

    Returns:
        ``(N,)`` bool mask of the samples whose label is kept.
    """
    check_fraction(fraction)
    has = labelled_mask(labels)
    keys = strata(labels)
    keep = np.zeros(len(keys), dtype=bool)
    rng = np.random.default_rng([int(seed), 0x1ABE1])
    for k in np.unique(keys[has]):
        members = np.flatnonzero((keys == k) & has)
        n = len(members) if fraction >= 1.0 else max(1, int(round(len(members) * fraction)))
        keep[rng.permutation(members)[:n]] = True
    return keep


def write_labelled_ids(path: str | os.PathLike[str], ids: Iterable[str]) -> Path:
    """Write the labelled sample ids (``sample_id`` CSV) atomically."""
    return write_csv_rows(Path(path), ["sample_id"], ([i] for i in ids))


def read_labelled_ids(path: str | os.PathLike[str]) -> list[str]:
    """The ids in a ``labelled.csv``.

    Raises:
        DataError: unreadable, no ``sample_id`` column, or duplicate ids.
    """
    p = Path(path)
    rows = read_csv_rows(p, "labelled ids")
    if rows and "sample_id" not in rows[0]:
        raise DataError(f"{p} needs a sample_id column")
    ids = [r["sample_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise DataError(f"duplicate sample ids in {p}")
    return ids


def per_class_counts(labels: np.ndarray, mask: np.ndarray, num_classes: int) -> tuple[int, ...]:
    """Labelled samples per class among ``mask`` (multi-label: positives per class)."""
    labels = np.asarray(labels)[np.asarray(mask, dtype=bool)]
    if labels.ndim == 1:
        return tuple(int(c) for c in np.bincount(labels[labels >= 0], minlength=num_classes))
    return tuple(int(c) for c in (labels > 0).sum(axis=0))


def missing_classes(counts: Sequence[int], class_names: Sequence[str]) -> list[str]:
    """Names of the classes with no labelled sample."""
    return [n for n, c in zip(class_names, counts, strict=True) if c == 0]
