"""Samples without a label: a user's unlabelled/ folder, empty labels, the stratified labelled fraction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmkd_edge.data import open_dataset
from cmkd_edge.data.labelled import (
    read_labelled_ids,
    stratified_fraction,
    write_labelled_ids,
)
from cmkd_edge.data.labels import UNLABELLED, labelled_mask
from cmkd_edge.data.layouts import clear_cache
from cmkd_edge.data.splits import read_split_file, stratified_split, write_split_file
from cmkd_edge.errors import ConfigError, DataError

CLASSES = ("2S1", "BMP2", "T72")


def _write_chip(path: Path, rng: np.random.Generator, k: int) -> None:
    img = rng.gamma(1.0, 20.0, (16, 16))
    img[6:10, 6 - k:10 + k] += 150
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


def chip_folders(root: Path, per_class: int = 6, unlabelled: int = 5, folder: str = "unlabelled") -> Path:
    """``<Class>/`` folders of chips (no labels.csv) and a folder of chips without a label."""
    rng = np.random.default_rng(0)
    for k, cls in enumerate(CLASSES):
        for i in range(per_class):
            _write_chip(root / cls / f"{i:03d}.png", rng, k)
    for i in range(unlabelled):
        _write_chip(root / folder / f"u{i:03d}.png", rng, i % 3)
    clear_cache()
    return root


def test_unlabelled_folder_is_read_as_training_samples_without_labels(tmp_path: Path) -> None:
    root = chip_folders(tmp_path / "chips")
    train = open_dataset(root, views=["chip"], split="train", split_file=tmp_path / "split.csv")
    assert train.class_names == list(CLASSES)  # the folder is not a class
    unl = [i for i, s in enumerate(train.ids) if s.startswith("unlabelled/")]
    assert len(unl) == 5 and (train.labels[unl] == UNLABELLED).all()
    assert not train.labelled[unl].any() and train.labelled.sum() == len(train) - 5
    for split in ("val", "test"):  # validation and test stay labelled
        ds = open_dataset(root, views=["chip"], split=split, split_file=tmp_path / "split.csv")
        assert ds.labelled.all() and not any(s.startswith("unlabelled/") for s in ds.ids)


def test_unlabeled_spelling_and_eurosat_folders(tmp_path: Path, make_eurosat) -> None:
    root = chip_folders(tmp_path / "chips", folder="unlabeled")
    ds = open_dataset(root, views=["chip"], split="all")
    assert (~ds.labelled).sum() == 5
    es = make_eurosat(root=tmp_path / "es")
    (es / "unlabelled").mkdir()
    (es / "A" / "A_0.tif").rename(es / "unlabelled" / "x.tif")
    clear_cache()
    ds = open_dataset(es, views=["ms"], split="all")
    assert ds.class_names == ["A", "B", "C"] and ds.ids[list(ds.labelled).index(False)] == "unlabelled/x.tif"


def test_empty_label_in_labels_csv_and_a_labelled_val_split(tmp_path: Path) -> None:
    root = chip_folders(tmp_path / "chips", unlabelled=0)

    def write(unlabelled_row: str) -> None:
        rows = ["file,label,class_name,split"]
        for k, cls in enumerate(CLASSES):
            for i in range(6):
                if (cls, i) != ("BMP2", 0):
                    split = ("train", "train", "train", "train", "val", "test")[i]
                    rows.append(f"{cls}/{i:03d}.png,{k},{cls},{split}")
        rows.append(unlabelled_row)
        (root / "labels.csv").write_text("\n".join(rows) + "\n")
        clear_cache()

    write("BMP2/000.png,,,train")
    ds = open_dataset(root, views=["chip"], split="train")
    assert ds.labels[ds.ids.index("BMP2/000.png")] == UNLABELLED
    write("BMP2/000.png,,,val")
    with pytest.raises(DataError, match="split .val. of .* holds 1 unlabelled sample"):
        open_dataset(root, views=["chip"], split="val")
    write("BMP2/000.png,,BMP2,train")
    with pytest.raises(DataError, match="class_name 'BMP2' but no label"):
        open_dataset(root, views=["chip"], split="train")


def test_drawn_split_puts_unlabelled_samples_in_train_only() -> None:
    labels = np.array([0] * 10 + [1] * 10 + [UNLABELLED] * 7)
    names = stratified_split(labels, seed=3)
    assert (names[labels == UNLABELLED] == "train").all()
    assert {"val", "test"} <= set(names[labels >= 0])


def test_unused_split_rows_are_in_no_split(tmp_path: Path) -> None:
    ids = ["a", "b", "c"]
    write_split_file(tmp_path / "s.csv", [("a", "train"), ("b", "unused"), ("c", "test")])
    assert read_split_file(tmp_path / "s.csv", ids).tolist() == ["train", "unused", "test"]


def test_stratified_fraction_is_per_class_reproducible_and_keeps_one_per_class() -> None:
    labels = np.repeat(np.arange(4), [100, 40, 10, 3])
    keep = stratified_fraction(labels, 0.1, seed=0)
    assert [int(keep[labels == c].sum()) for c in range(4)] == [10, 4, 1, 1]
    assert (keep == stratified_fraction(labels, 0.1, seed=0)).all()
    assert (keep != stratified_fraction(labels, 0.1, seed=1)).any()
    assert stratified_fraction(labels, 1.0, seed=0).all()
    with_unl = np.concatenate([labels, [UNLABELLED] * 5])
    assert not stratified_fraction(with_unl, 1.0, seed=0)[-5:].any()


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_fraction_outside_0_1_is_a_config_error(bad: float) -> None:
    with pytest.raises(ConfigError, match=r"labelled fraction must be in \(0, 1\]"):
        stratified_fraction(np.zeros(10, int), bad, 0)


def test_hide_labels_keeps_true_labels_and_multilabel_rows(tmp_path: Path) -> None:
    ds = open_dataset("synthetic:per_class=6,size=8", views=["ms"], split="train")
    keep = stratified_fraction(ds.labels, 0.3, seed=0)
    ds.hide_labels(keep)
    assert (ds.labels[~keep] == UNLABELLED).all() and (ds.true_labels[~keep] >= 0).all()
    assert (labelled_mask(ds.labels) == keep).all()
    ml = np.array([[1, 0, 1], [-1, -1, -1], [0, 0, 0]], dtype=np.float32)
    assert labelled_mask(ml).tolist() == [True, False, True]
    write_labelled_ids(tmp_path / "l.csv", ["x", "y"])
    assert read_labelled_ids(tmp_path / "l.csv") == ["x", "y"]
