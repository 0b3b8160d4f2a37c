"""Shared fixtures of the data-layer tests: sample-data paths and a GeoTIFF writer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

# The shared sample data lives beside the checkout (<clone>/../shared/data); tests skip without it.
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EUROSAT = SHARED / "eurosat_ms_200"
BEN = SHARED / "bigearthnet_mm_tiny"
#: Small synthetic set so tests stay fast.
TINY = "synthetic:per_class=6,size=16"


@pytest.fixture(scope="session")
def tiny() -> str:
    """Spec of a small synthetic set (fast)."""
    return TINY


@pytest.fixture(scope="session")
def eurosat_dir() -> Path:
    if not (EUROSAT / "labels.csv").is_file():
        pytest.skip(f"shared EuroSAT sample not found at {EUROSAT}")
    return EUROSAT


@pytest.fixture(scope="session")
def ben_dir() -> Path:
    if not (BEN / "bigearthnet_mm_tiny.npz").is_file():
        pytest.skip(f"shared BigEarthNet sample not found at {BEN}")
    return BEN


def _write_tif(path: Path, arr: np.ndarray, descriptions: Sequence[str] | None = None) -> Path:
    import rasterio
    from rasterio.transform import Affine

    arr = np.asarray(arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "height": arr.shape[1], "width": arr.shape[2],
               "count": arr.shape[0], "dtype": arr.dtype.name, "crs": "EPSG:32632",
               "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)
    return path


@pytest.fixture
def write_tif() -> Callable[..., Path]:
    """``write_tif(path, (B, H, W) array, descriptions=None)`` writes a real GeoTIFF."""
    return _write_tif


@pytest.fixture
def make_eurosat(tmp_path: Path) -> Callable[..., Path]:
    """Write a tiny EuroSAT-MS folder (``classes`` x ``per_class`` 13-band 8x8 patches)."""

    def make(classes: Sequence[str] = ("A", "B", "C"), per_class: int = 5, root: Path | None = None,
             seed: int = 0) -> Path:
        root = root or tmp_path / "eurosat"
        rng = np.random.default_rng(seed)
        for k, cls in enumerate(classes):
            for i in range(per_class):
                arr = rng.integers(100 * (k + 1), 100 * (k + 1) + 500, size=(13, 8, 8))
                _write_tif(root / cls / f"{cls}_{i}.tif", arr.astype(np.uint16))
        return root

    return make

