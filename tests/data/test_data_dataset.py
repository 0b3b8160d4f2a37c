"""Datasets: items, augmentation alignment, statistics on the training split, reporting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from cmkd_edge.data import band_stats, open_dataset
from cmkd_edge.data.augment import dihedral, random_dihedral
from cmkd_edge.data.labels import labels_tensor, multi_hot

torch.set_num_threads(1)


def test_item_types_and_loader(tiny: str) -> None:
    ds = open_dataset(tiny, views=["ms", "sar"], split="train")
    batch, labels = next(iter(DataLoader(ds, batch_size=5)))
    assert batch["ms"].shape == (5, 13, 16, 16) and batch["sar"].shape == (5, 2, 16, 16)
    assert labels.dtype == torch.int64 and labels.tolist() == ds.labels[:5].tolist()
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_items_do_not_alias_the_cache(tiny: str) -> None:
    ds = open_dataset(tiny, views=["ms"], split="val")
    x, _ = ds[0]
    x["ms"].zero_()
    assert ds[0][0]["ms"].abs().sum() > 0


def test_dihedral_group() -> None:
    a = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    outs = {dihedral(a, k).tobytes() for k in range(8)}
    assert len(outs) == 8
    rect = random_dihedral({"x": np.zeros((1, 2, 5))}, np.random.default_rng(0))
    assert rect["x"].shape == (1, 2, 5)


def test_augmentation_keeps_views_aligned(tiny: str) -> None:
    ds = open_dataset(tiny, views=["ms", "rgb", "sar"], split="train", augment=True, seed=0)
    plain = open_dataset(tiny, views=["ms", "sar"], split="train")
    changed = 0
    for epoch in range(4):
        ds.set_epoch(epoch)
        x, _ = ds[1]
        assert torch.equal(x["rgb"], x["ms"][[3, 2, 1]])
        ref, _ = plain[1]
        # the same D4 element moved both sensors: find it from ms and check it on sar
        k = next(k for k in range(8) if np.array_equal(dihedral(ref["ms"].numpy(), k),
                                                       x["ms"].numpy()))
        assert np.array_equal(dihedral(ref["sar"].numpy(), k), x["sar"].numpy())
        changed += k != 0
    assert changed >= 1


def test_augment_only_on_train(tiny: str) -> None:
    assert not open_dataset(tiny, views=["ms"], split="val", augment=True).augment


def test_stats_on_the_given_split_only(tiny: str) -> None:
    train = open_dataset(tiny, views=["ms", "sar-sim"], split="train")
    full = open_dataset(tiny, views=["ms"], split="all")
    mean, std = band_stats(train, "ms")
    ref = train.catalog.sources["s2"][train.indices].astype(np.float64)
    assert mean.dtype == np.float64 and mean.shape == (13,)
    assert np.allclose(mean, ref.mean(axis=(0, 2, 3))) and np.allclose(std, ref.std(axis=(0, 2, 3)))
    assert not np.allclose(mean, band_stats(full, "ms")[0])
    chunked = band_stats(train, "ms", chunk=7)
    assert np.allclose(chunked[0], mean) and np.allclose(chunked[1], std)
    sub = Subset(full, train.indices.tolist())
    assert np.allclose(band_stats(sub, "ms")[0], mean)
    sim_mean, sim_std = band_stats(train, "sar-sim")
    assert sim_mean.shape == (2,) and (sim_std > 0).all() and sim_mean[1] < sim_mean[0]


def test_stats_see_clipped_values_like_the_model(tiny: str) -> None:
    """InputNorm clamps before it normalises, so the statistics must be of clipped values too."""
    train = open_dataset(tiny, views=["ms"], split="train")
    ref = train.catalog.sources["s2"][train.indices].astype(np.float64)
    lo, hi = np.percentile(ref, [10, 90])
    train.views["ms"] = dataclasses.replace(train.views["ms"], clip=(float(lo), float(hi)))
    mean, std = band_stats(train, "ms", chunk=7)
    clipped = np.clip(ref, lo, hi)
    assert np.allclose(mean, clipped.mean(axis=(0, 2, 3)))
    assert np.allclose(std, clipped.std(axis=(0, 2, 3)))

    class Items:  # a generic dataset (no view_batch): the item-by-item path clips as well
        def __init__(self, x: np.ndarray) -> None:
            self.x, self.views = x, {"v": dataclasses.replace(train.views["ms"], clip=(0.0, 10.0))}

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int):
            return {"v": self.x[i]}, 0

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, size=(4, 2, 3, 3)).astype(np.float32)
    outliers = x.copy()
    outliers[0, 0, 0, 0], outliers[1, 1, 2, 2] = 1e6, -1e6  # saturated pixels beyond the clip
    x[0, 0, 0, 0], x[1, 1, 2, 2] = 10.0, 0.0
    for a, b in zip(band_stats(Items(outliers), "v"), band_stats(Items(x), "v"), strict=True):
        assert np.allclose(a, b)


def test_stats_on_real_eurosat_train(eurosat_dir) -> None:
    train = open_dataset(eurosat_dir, views=["rgb"], split="train")
    mean, std = band_stats(train, "rgb")
    assert 500 < mean.min() and mean.max() < 2000 and (std > 100).all()


def test_describe_and_split_table(tiny: str, tmp_path) -> None:
    ds = open_dataset(tiny, views=["rgb", "sar-sim"], split="test")
    info = ds.describe()
    assert info["synthetic"] and info["synthetic_data"] and info["synthetic_views"] == ["sar-sim"]
    assert info["layout"] == "synthetic" and info["n"] == len(ds)
    assert sum(info["n_per_split"].values()) == len(ds.split_table) == 36
    path = ds.write_split_file(tmp_path / "split.csv")
    again = open_dataset(tiny, views=["rgb"], split="test", split_file=path)
    assert again.ids == ds.ids and again.split_origin.startswith("split file")
    assert "SYNTHETIC" in repr(ds)


def test_label_helpers() -> None:
    y = multi_hot([[0, 2], [1]], 3)
    assert y.tolist() == [[1, 0, 1], [0, 1, 0]] and y.dtype == np.float32
    assert labels_tensor(y, "multilabel").dtype == torch.float32
    assert labels_tensor(np.array([1, 2]), "multiclass").dtype == torch.int64


def test_view_batch_of_a_simulated_view_equals_getitem(tmp_path):
    """Speckle draws are per item: evaluate (ds[i]) and export/quantize (view_batch) see the same patches."""
    import numpy as np

    from cmkd_edge.data import open_dataset

    ds = open_dataset("synthetic:per_class=4,size=8", views=["sar-sim"], split="test", seed=3)
    batch = ds.view_batch("sar-sim")
    one_by_one = np.stack([ds[i][0]["sar-sim"].numpy() for i in range(len(ds))])
    np.testing.assert_array_equal(batch, one_by_one)
    np.testing.assert_array_equal(ds.view_batch("sar-sim", [2, 0]), one_by_one[[2, 0]])
