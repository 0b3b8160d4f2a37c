"""Splits: seeded stratification, stratified subsets, split files."""

from __future__ import annotations

import numpy as np
import pytest

from cmkd_edge.data.splits import (
    read_split_file,
    stratified_indices,
    stratified_split,
    write_split_file,
)
from cmkd_edge.errors import DataError

LABELS = np.repeat(np.arange(4), [10, 20, 5, 15])


def test_stratified_split_is_seeded_and_stratified() -> None:
    a, b, c = (stratified_split(LABELS, s) for s in (0, 0, 1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for k, n in enumerate([10, 20, 5, 15]):
        counts = [int(((LABELS == k) & (a == s)).sum()) for s in ("train", "val", "test")]
        assert sum(counts) == n and min(counts) >= 1
        assert counts[0] == round(0.6 * n)


def test_multilabel_split_covers_everything() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((40, 5)) < 0.3).astype(np.float32)
    s = stratified_split(y, 0)
    assert set(s) == {"train", "val", "test"} and len(s) == 40


def test_stratified_indices_keep_proportions() -> None:
    idx = stratified_indices(LABELS, 10, seed=0)
    assert len(idx) == 10 and len(set(idx)) == 10 and np.all(np.diff(idx) > 0)
    assert np.bincount(LABELS[idx], minlength=4).tolist() == [2, 4, 1, 3]
    assert np.array_equal(idx, stratified_indices(LABELS, 10, seed=0))
    assert len(stratified_indices(LABELS, 500)) == len(LABELS)


def test_split_file_round_trip_and_mismatch(tmp_path) -> None:
    ids = ["a", "b", "c"]
    path = write_split_file(tmp_path / "split.csv", zip(ids, ["train", "val", "test"],
                                                        strict=True))
    assert read_split_file(tmp_path, ids).tolist() == ["train", "val", "test"]
    with pytest.raises(DataError, match="does not match the data"):
        read_split_file(path, ["a", "b", "c", "d"])
    path.write_text("sample_id,split\na,train\na,val\n")
    with pytest.raises(DataError, match="duplicate sample 'a'"):
        read_split_file(path, ["a"])
