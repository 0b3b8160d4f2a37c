"""sar-sim: backscatter levels per cover, speckle statistics, use of the passed rng."""

from __future__ import annotations

import numpy as np
import pytest

from cmkd_edge.data import open_dataset
from cmkd_edge.data.bands import EUROSAT_BANDS
from cmkd_edge.data.sar_sim import mean_backscatter, simulate_sar
from cmkd_edge.errors import DataError

# reflectance x 1e4 per EuroSAT band (B01..B12, B8A)
WATER = [1300, 1000, 800, 500, 400, 300, 250, 200, 100, 10, 100, 50, 200]
FOREST = [1200, 700, 900, 400, 900, 2500, 3200, 4200, 900, 15, 1700, 700, 4300]
URBAN = [1500, 1300, 1300, 1400, 1600, 1800, 1900, 2000, 700, 20, 2900, 2400, 2100]


def _patch(spectrum: list[int], size: int = 64) -> np.ndarray:
    return np.asarray(spectrum, np.float32)[:, None, None] * np.ones((1, size, size), np.float32)


def _db(spectrum: list[int]) -> np.ndarray:
    return 10 * np.log10(mean_backscatter(_patch(spectrum, 1), EUROSAT_BANDS)[:, 0, 0])


def test_cover_levels_are_plausible() -> None:
    water, forest, urban = _db(WATER), _db(FOREST), _db(URBAN)
    assert -27 < water[0] < -22 and water[1] < -28
    assert -10 < forest[0] < -7 and -17 < forest[1] < -13
    assert urban[0] > forest[0] and urban[0] > -5
    assert (water < forest).all()


def test_speckle_variance_is_one_over_looks() -> None:
    rng = np.random.default_rng(0)
    for looks in (1.0, 4.0):
        db = simulate_sar(_patch(FOREST, 128), EUROSAT_BANDS, rng, looks=looks)
        ratio = 10 ** (db / 10) / 10 ** (_db(FOREST) / 10)[:, None, None]
        assert abs(ratio.mean() - 1) < 0.03
        assert ratio.var() == pytest.approx(1 / looks, rel=0.08)


def test_speckle_comes_from_the_rng() -> None:
    patch = _patch(WATER, 8)
    a = simulate_sar(patch, EUROSAT_BANDS, np.random.default_rng(1))
    b = simulate_sar(patch, EUROSAT_BANDS, np.random.default_rng(1))
    c = simulate_sar(patch, EUROSAT_BANDS, np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == (2, 8, 8)


def test_needs_green_red_nir_swir() -> None:
    with pytest.raises(DataError, match="B11"):
        simulate_sar(np.ones((3, 4, 4)), ("B04", "B03", "B08"), np.random.default_rng(0))


def test_water_darker_than_vegetation_on_real_eurosat(eurosat_dir) -> None:
    ds = open_dataset(eurosat_dir, views=["sar-sim"], split="all")
    x = ds.view_batch("sar-sim")
    names = np.asarray(ds.class_names)[ds.labels]
    sea, forest = x[names == "SeaLake"], x[names == "Forest"]
    assert sea[:, 0].mean() < -18 and sea[:, 0].mean() < forest[:, 0].mean() - 6
    assert -12 < forest[:, 0].mean() < -5 and -19 < forest[:, 1].mean() < -11


def test_eval_is_deterministic_and_augment_is_fresh(tiny: str) -> None:
    a = open_dataset(tiny, views=["sar-sim"], split="train", seed=3)
    b = open_dataset(tiny, views=["sar-sim"], split="train", seed=3)
    assert np.array_equal(a[2][0]["sar-sim"], b[2][0]["sar-sim"])
    assert np.array_equal(a[2][0]["sar-sim"], a[2][0]["sar-sim"])
    aug = open_dataset(tiny, views=["sar-sim"], split="train", seed=3, augment=True)
    first = aug[2][0]["sar-sim"]
    aug.set_epoch(1)
    assert not np.array_equal(first, aug[2][0]["sar-sim"])
