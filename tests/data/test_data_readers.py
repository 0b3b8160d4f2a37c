"""Readers: GeoTIFF band names and every read error as a one-line DataError naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from cmkd_edge.data.bands import EUROSAT_BANDS
from cmkd_edge.data.readers import read_geotiff, read_npy, read_raster
from cmkd_edge.errors import DataError


def test_band_names_from_descriptions(tmp_path, write_tif) -> None:
    arr = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    path = write_tif(tmp_path / "a.tif", arr, ["B08", "b4", "B03"])
    out, names = read_geotiff(path, EUROSAT_BANDS)
    assert names == ("B08", "B04", "B03")
    assert out.dtype == np.float32 and np.array_equal(out, arr)


def test_band_names_from_layout_without_descriptions(tmp_path, write_tif) -> None:
    path = write_tif(tmp_path / "a.tif", np.zeros((13, 2, 2), np.uint16))
    assert read_geotiff(path, EUROSAT_BANDS, expected_count=13)[1] == EUROSAT_BANDS


def test_npy(tmp_path) -> None:
    np.save(tmp_path / "a.npy", np.ones((2, 3, 3), np.float32))
    np.save(tmp_path / "b.npy", np.ones((3, 3), np.float32))
    assert read_raster(tmp_path / "a.npy", ("VV", "VH"))[1] == ("VV", "VH")
    assert read_npy(tmp_path / "b.npy", ("B04",))[0].shape == (1, 3, 3)


def _truncated(tmp_path, write_tif):
    path = write_tif(tmp_path / "full.tif", np.random.default_rng(0).integers(
        0, 60000, size=(13, 64, 64)).astype(np.uint16))
    data = path.read_bytes()
    bad = tmp_path / "trunc.tif"
    bad.write_bytes(data[: len(data) // 2])
    return bad


@pytest.mark.parametrize("case, match", [
    ("missing", "file not found"),
    ("text", "not a GeoTIFF"),
    ("truncated", "truncated or corrupt"),
    ("bands", "has 12 bands, expected 13"),
    ("nan", "NaN/Inf"),
    ("npy-pickle", "not a readable .npy"),
    ("suffix", "unsupported raster"),
])
def test_read_errors(case: str, match: str, tmp_path, write_tif) -> None:
    if case == "missing":
        path = tmp_path / "nope.tif"
    elif case == "text":
        path = tmp_path / "t.tif"
        path.write_text("this is not a tiff\n")
    elif case == "truncated":
        path = _truncated(tmp_path, write_tif)
    elif case == "bands":
        path = write_tif(tmp_path / "b.tif", np.zeros((12, 4, 4), np.uint16))
    elif case == "nan":
        arr = np.zeros((2, 4, 4), np.float32)
        arr[1, 2, 2] = np.nan
        path = write_tif(tmp_path / "n.tif", arr)
    elif case == "npy-pickle":
        path = tmp_path / "p.npy"
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        path = tmp_path / "x.jpg"
        path.write_bytes(b"\xff\xd8")
    with pytest.raises(DataError, match=match) as info:
        read_raster(path, EUROSAT_BANDS, expected_count=13 if case == "bands" else None)
    line = info.value.one_line()
    assert "\n" not in line and path.name in line
