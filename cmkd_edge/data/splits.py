"""Train/val/test splits: seeded stratified splits, split files, stratified subsets.

A split that is not shipped with the data is drawn once, written to the run's ``split.csv`` and
re-read by later stages, so evaluation, calibration and quantization see exactly the same test set.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from cmkd_edge.errors import DataError
from cmkd_edge.fsutil import atomic_write_text

SPLITS: tuple[str, ...] = ("train", "val", "test")
#: A sample in no split: a split file can set samples aside (e.g. the teacher-modality half of an
#: unpaired experiment, read by the teacher's gallery and never by the student).
UNUSED = "unused"
_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
            "validation": "val", "test": "test", "testing": "test", UNUSED: UNUSED}
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


def normalise_split(name: str, where: str = "") -> str:
    """Canonical split name (``validation`` -> ``val``); ``all`` is kept.

    Raises:
        DataError: not a split name.
    """
    key = str(name).strip().lower()
    if key == "all":
        return key
    if key not in _ALIASES:
        at = f" in {where}" if where else ""
        raise DataError(f"unknown split {name!r}{at} (expected train, val, test or {UNUSED})")
    return _ALIASES[key]


def strata(labels: np.ndarray) -> np.ndarray:
    """One stratum per sample: the class (multiclass) or the rarest positive label (multi-label)."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return labels.astype(np.int64)
    counts = np.where(labels > 0, labels, 0).sum(axis=0)
    rarity = np.where(labels > 0, counts[None, :], np.inf)
    key = np.argmin(rarity, axis=1)
    return np.where(np.isfinite(rarity.min(axis=1)), key, -1).astype(np.int64)


def _allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` items by ``fractions`` (largest remainder), giving every split one item if n >= 3."""
    raw = np.asarray(fractions, dtype=np.float64) * n / sum(fractions)
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    if n >= len(counts):
        for i in range(len(counts)):
            if counts[i] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[i] += 1
    return counts.tolist()


def stratified_split(labels: np.ndarray, seed: int,
                     fractions: Sequence[float] = DEFAULT_FRACTIONS) -> np.ndarray:
    """Assign each sample to train/val/test, stratified by class, reproducibly from ``seed``.

    Unlabelled samples (label -1) all go to train: validation and test need labels.

    Args:
        labels: ``(N,)`` class indices or ``(N, K)`` multi-hot.
        seed: RNG seed; the same seed and labels always give the same split.
        fractions: train/val/test proportions.

    Returns:
        ``(N,)`` array of split names.
    """
    from cmkd_edge.data.labels import labelled_mask

    keys = strata(labels)
    rng = np.random.default_rng(seed)
    out = np.empty(len(keys), dtype=object)
    has = labelled_mask(labels)
    out[~has] = "train"
    for k in np.unique(keys[has]):
        members = rng.permutation(np.flatnonzero((keys == k) & has))
        start = 0
        for name, count in zip(SPLITS, _allocate(len(members), fractions), strict=True):
            out[members[start:start + count]] = name
            start += count
    return out.astype(str)


def stratified_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` sample indices with the class proportions of ``labels`` (e.g. a calibration set).

    Args:
        labels: ``(N,)`` class indices or ``(N, K)`` multi-hot.
        n: how many to pick (all of them if ``n >= N``).
        seed: RNG seed.

    Returns:
        Sorted ``(min(n, N),)`` int64 indices.
    """
    keys = strata(labels)
    total = len(keys)
    if n >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(keys, return_counts=True)
    quota = counts * n / total
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:
        take[i] += 1
    picked = [rng.permutation(np.flatnonzero(keys == k))[:t] for k, t in zip(classes, take,
                                                                             strict=True)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def resolve_split_file(path: str | os.PathLike[str]) -> Path:
    """A split file path; a directory (a run dir) means its ``split.csv``."""
    p = Path(path)
    return p / "split.csv" if p.is_dir() else p


def write_csv_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    """Write a small id table (split.csv, labelled.csv) atomically; returns the path."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(header))
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return path


def read_csv_rows(path: Path, what: str) -> list[dict[str, str]]:
    """Rows of a small id table; an unreadable file is a one-line DataError naming ``what`` it is."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise DataError(f"cannot read {what} {path} ({exc.strerror})") from exc


def write_split_file(path: str | os.PathLike[str], table: Iterable[tuple[str, str]]) -> Path:
    """Write ``(sample_id, split)`` rows as CSV (``sample_id,split``) atomically; returns the path."""
    return write_csv_rows(resolve_split_file(path), ["sample_id", "split"], table)


def read_split_file(path: str | os.PathLike[str], ids: Sequence[str]) -> np.ndarray:
    """Read a split file written by :func:`write_split_file` and return the split of each id.

    Raises:
        DataError: unreadable file, duplicate ids, ids the data lacks, or data ids it lacks.
    """
    p = resolve_split_file(path)
    rows = read_csv_rows(p, "split file")
    if not rows or not {"sample_id", "split"} <= set(rows[0]):
        raise DataError(f"split file {p} needs columns sample_id,split")
    table: dict[str, str] = {}
    for row in rows:
        sid = row["sample_id"]
        if sid in table:
            raise DataError(f"duplicate sample {sid!r} in split file {p}")
        table[sid] = normalise_split(row["split"], where=str(p))
    missing = [i for i in ids if i not in table]
    extra = set(table) - set(ids)
    if missing or extra:
        what = f"lacks {missing[0]!r}" if missing else f"names unknown sample {sorted(extra)[0]!r}"
        raise DataError(f"split file {p} does not match the data ({what})",
                        "delete it to draw a new split, or point at the data it was made for")
    return np.asarray([table[i] for i in ids], dtype=str)
