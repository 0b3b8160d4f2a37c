"""Labels: the ``labels.csv`` reader shared by layouts, and label tensors for both tasks.

Multiclass labels are int64 class indices (what ``cross_entropy`` takes); multi-label targets are
float32 multi-hot rows (what ``binary_cross_entropy_with_logits`` takes). A sample without a label
(an empty ``label`` in labels.csv, a file in an ``unlabelled/`` folder, or a label hidden by
``--labelled-fraction``) carries :data:`UNLABELLED` (-1; a row of -1 for multi-label): it can only
learn through its teacher-modality partner, and the losses and metrics skip it
(:func:`labelled_mask`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmkd_edge.errors import DataError

#: The label of a sample without one (multiclass index; every entry of a multi-label row).
UNLABELLED = -1
#: Folder names that hold unlabelled samples beside the class folders of a layout.
UNLABELLED_DIRS = ("unlabelled", "unlabeled")


def labelled_mask(labels: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: which samples carry a label (multiclass ``>= 0``; multi-label rows not all -1)."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return labels >= 0
    return ~(labels < 0).all(axis=1) if labels.shape[1] else np.ones(len(labels), bool)


def hide_labels(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """A copy of ``labels`` with every sample outside ``keep`` (bool mask) set to :data:`UNLABELLED`."""
    out = np.array(labels, copy=True)
    out[~np.asarray(keep, dtype=bool)] = UNLABELLED
    return out


def read_labels_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a labels CSV; checks the columns and refuses duplicate ``file`` rows."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path} ({exc})") from exc
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {','.join(missing)} (has {','.join(columns)})")
    seen: set[str] = set()
    for i, row in enumerate(rows, start=2):
        if row["file"] in seen:
            raise DataError(f"duplicate row for {row['file']!r} in {path} (line {i})")
        seen.add(row["file"])
    if not rows:
        raise DataError(f"{path} has no rows")
    return rows


def resolve_labels(rows: list[dict[str, str]], path: Path,
                   class_names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """Class index per row from ``label`` (index or name) and optional ``class_name`` columns.

    Args:
        rows: labels.csv rows.
        path: the CSV (for messages).
        class_names: the known classes (e.g. the class folders), or None to take them from the CSV.

    Raises:
        DataError: a class not in ``class_names``, an index out of range, or a label/class_name pair
            that disagrees with the rest of the file.
    """
    has_name = "class_name" in rows[0]
    pairs: dict[int, str] = {}
    named = [r for r in rows if r["label"] != ""]  # an empty label = an unlabelled sample
    if not named:
        raise DataError(f"{path} has no labelled row", "give at least one sample of every class a label")
    if class_names is None:
        if has_name:
            for line, row in enumerate(rows, start=2):
                if row["label"] == "":
                    continue
                idx = _int(row["label"], path, line)
                if pairs.setdefault(idx, row["class_name"]) != row["class_name"]:
                    raise DataError(f"label {idx} means both {pairs[idx]!r} and "
                                    f"{row['class_name']!r} in {path} (line {line})")
            if sorted(pairs) != list(range(len(pairs))):
                raise DataError(f"labels in {path} are not 0..{len(pairs) - 1}")
            class_names = [pairs[i] for i in range(len(pairs))]
        elif all(r["label"].lstrip("-").isdigit() for r in named):
            class_names = [str(i) for i in range(max(int(r["label"]) for r in named) + 1)]
        else:
            class_names = sorted({r["label"] for r in named})
    lookup = {name: i for i, name in enumerate(class_names)}
    out = np.empty(len(rows), dtype=np.int64)
    for line, row in enumerate(rows, start=2):
        label = row["label"]
        name = row["class_name"] if has_name else None
        if label == "":
            if name:
                raise DataError(f"row for {row['file']!r} has class_name {name!r} but no label in "
                                f"{path} (line {line})", "give both, or leave both empty for an "
                                "unlabelled sample")
            out[line - 2] = UNLABELLED
            continue
        if label.lstrip("-").isdigit():
            idx = int(label)
            if not 0 <= idx < len(class_names):
                raise DataError(f"unknown class {idx} in {path} (line {line}; "
                                f"{len(class_names)} classes)")
        elif label in lookup:
            idx = lookup[label]
        else:
            raise DataError(f"unknown class {label!r} in {path} (line {line}; "
                            f"classes: {', '.join(class_names)})")
        if name is not None and name != class_names[idx]:
            if name not in lookup:
                raise DataError(f"unknown class {name!r} in {path} (line {line}; "
                                f"classes: {', '.join(class_names)})")
            raise DataError(f"label {idx} is {class_names[idx]!r}, not {name!r}, "
                            f"in {path} (line {line})")
        out[line - 2] = idx
    return out, list(class_names)


def _int(text: str, path: Path, line: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"label {text!r} is not an integer in {path} (line {line})") from None


def multi_hot(indices: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """``(N, K)`` float32 multi-hot rows from per-sample lists of class indices."""
    out = np.zeros((len(indices), num_classes), dtype=np.float32)
    for i, idx in enumerate(indices):
        out[i, list(idx)] = 1.0
    return out


def label_tensor(label: Any, task: str) -> Any:
    """One sample's label as a torch tensor: int64 scalar (multiclass) or float32 multi-hot."""
    import torch

    if task == "multilabel":
        return torch.as_tensor(np.asarray(label, dtype=np.float32))
    return torch.as_tensor(int(label), dtype=torch.int64)


def labels_tensor(labels: np.ndarray, task: str) -> Any:
    """All labels as one tensor: ``(N,)`` int64 or ``(N, K)`` float32 (for metrics and losses)."""
    import torch

    if task == "multilabel":
        return torch.as_tensor(np.asarray(labels, dtype=np.float32))
    return torch.as_tensor(np.asarray(labels, dtype=np.int64))
