"""Synthetic default: deterministic, labelled synthetic, optical more informative than SAR."""

from __future__ import annotations

import numpy as np
import pytest

from cmkd_edge.data import open_dataset
from cmkd_edge.data.synthetic import SyntheticConfig, generate, parse_synthetic
from cmkd_edge.errors import ConfigError


def _linear_accuracy(train, test, view: str) -> float:
    """Ridge least-squares classifier on standardised per-band median/std features."""
    def feats(ds):
        x = ds.view_batch(view).astype(np.float64)
        return np.concatenate([np.median(x, axis=(2, 3)), x.std(axis=(2, 3))], axis=1)
    f_tr, f_te = feats(train), feats(test)
    mu, sd = f_tr.mean(0), f_tr.std(0) + 1e-9
    f_tr, f_te = (np.c_[(f - mu) / sd, np.ones(len(f))] for f in (f_tr, f_te))
    onehot = np.eye(len(train.class_names))[train.labels]
    w = np.linalg.solve(f_tr.T @ f_tr + 1e-2 * np.eye(f_tr.shape[1]), f_tr.T @ onehot)
    return float(((f_te @ w).argmax(1) == test.labels).mean())


def test_default_is_deterministic_and_sized_for_the_demo() -> None:
    a = generate(SyntheticConfig())
    generate.cache_clear()
    b = generate(SyntheticConfig())
    assert np.array_equal(a.sources["s2"], b.sources["s2"])
    assert np.array_equal(a.sources["s1"], b.sources["s1"])
    assert a.sources["s2"].shape == (480, 13, 32, 32) and a.sources["s1"].shape == (480, 2, 32, 32)
    assert a.synthetic and len(a.class_names) == 6
    assert 0 <= a.sources["s2"].min() and a.sources["s2"].max() <= 20000
    assert -60 < a.sources["s1"].min() and a.sources["s1"].max() < 30


def test_none_and_literal_mean_synthetic() -> None:
    ds = open_dataset(None, views=["ms"], split="val")
    assert ds.describe()["layout"] == "synthetic" and ds.synthetic
    assert open_dataset("synthetic", views=["ms"], split="val").catalog is ds.catalog


def test_optical_carries_more_class_information_than_sar() -> None:
    spec = "synthetic:per_class=40,size=16"
    train = open_dataset(spec, views=["ms", "rgb", "sar"], split="train")
    test = open_dataset(spec, views=["ms", "rgb", "sar"], split="test")
    ms, rgb, sar = (_linear_accuracy(train, test, v) for v in ("ms", "rgb", "sar"))
    chance = 1 / len(train.class_names)
    assert ms > 0.9 and ms > rgb and ms > sar + 0.15
    assert sar > chance + 0.2  # learnable, but harder


def test_crops_differ_only_beyond_visible() -> None:
    from cmkd_edge.data.synthetic import _OPTICAL

    wheat, maize = _OPTICAL[4], _OPTICAL[5]
    assert np.array_equal(wheat[1:4], maize[1:4])  # B02..B04 identical
    assert abs(wheat[7] - maize[7]) > 500  # B08 differs


def test_options() -> None:
    assert parse_synthetic("synthetic:per_class=5,size=8,looks=2") == SyntheticConfig(
        per_class=5, size=8, looks=2.0)
    with pytest.raises(ConfigError, match="unknown synthetic option"):
        parse_synthetic("synthetic:colour=1")
    with pytest.raises(ConfigError):
        SyntheticConfig(num_classes=9)
