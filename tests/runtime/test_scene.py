"""Scene tiling (pure rule + property test) and class-map GeoTIFFs: georeference, coverage, nodata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from cmkd_edge.runtime.classifier import Classifier
from cmkd_edge.runtime.scene import NODATA_CLASS, axis_tiles, classify_scene, tile_grid
from hypothesis import given, settings
from hypothesis import strategies as st

from cmkd_edge.errors import ConfigError, InputMismatchError


@settings(max_examples=300, deadline=None)
@given(data=st.data(), patch=st.integers(1, 40))
def test_tiling_covers_every_pixel_exactly_once(data: st.DataObject, patch: int) -> None:
    length = data.draw(st.integers(patch, 400))
    stride = data.draw(st.integers(1, patch))
    tiles = axis_tiles(length, patch, stride)
    origins = [o for o, _, _ in tiles]
    # rule 1: regular origins, plus one flush with the far edge when needed
    regular = list(range(0, length - patch + 1, stride))
    assert origins[: len(regular)] == regular
    assert origins[-1] == length - patch and len(origins) - len(regular) in (0, 1)
    # rule 2: cells partition [0, length), each inside its patch, nearest centre wins
    assert tiles[0][1] == 0 and tiles[-1][2] == length
    for (o, s, e), nxt in zip(tiles, tiles[1:] + [None], strict=True):
        assert o <= s < e <= o + patch
        if nxt is not None:
            assert e == nxt[1]
    owner = np.empty(length, int)
    for k, (_, s, e) in enumerate(tiles):
        owner[s:e] = k
    centres = np.array(origins) + patch / 2
    px = np.arange(length) + 0.5
    dist = np.abs(px[:, None] - centres[None, :])
    inside = (px[:, None] >= np.array(origins)) & (px[:, None] < np.array(origins) + patch)
    best = np.where(inside, dist, np.inf).argmin(axis=1)  # ties -> earlier patch (argmin)
    np.testing.assert_array_equal(owner, best)


@settings(max_examples=100, deadline=None)
@given(h=st.integers(8, 90), w=st.integers(8, 90), patch=st.integers(1, 8), data=st.data())
def test_grid_partitions_the_scene(h: int, w: int, patch: int, data: st.DataObject) -> None:
    stride = data.draw(st.integers(1, patch))
    count = np.zeros((h, w), int)
    for t in tile_grid(h, w, patch, stride):
        assert t.row <= t.r0 < t.r1 <= t.row + patch and t.col <= t.c0 < t.c1 <= t.col + patch
        count[t.r0:t.r1, t.c0:t.c1] += 1
    assert (count == 1).all()


def test_tiling_examples_and_errors() -> None:
    assert axis_tiles(10, 4) == [(0, 0, 4), (4, 4, 7), (6, 7, 10)]
    assert axis_tiles(8, 4) == [(0, 0, 4), (4, 4, 8)]
    assert axis_tiles(8, 4, 2) == [(0, 0, 3), (2, 3, 5), (4, 5, 8)]
    with pytest.raises(ConfigError, match="stride"):
        axis_tiles(10, 4, 5)
    with pytest.raises(InputMismatchError, match="smaller than"):
        axis_tiles(3, 4)


@pytest.fixture(scope="module")
def clf(bundle_dir: Path):
    with Classifier.open(bundle_dir, backend="onnxruntime") as c:
        yield c


@pytest.mark.parametrize("stride", [None, 7])
def test_scene_class_map(clf: Classifier, scene_factory, tmp_path: Path, stride: int | None) -> None:
    src = scene_factory(53, 41, block=16)
    out = tmp_path / "out" / "classes.tif"
    res = classify_scene(clf, src, out, stride=stride, batch=5, probabilities=True, progress=False, blend="none")
    with rasterio.open(src) as s, rasterio.open(out) as o, rasterio.open(res.probabilities) as p:
        assert (o.crs, o.transform, o.shape) == (s.crs, s.transform, s.shape)
        assert o.dtypes == ("uint8",) and o.nodata == NODATA_CLASS
        cmap, probs, scene = o.read(1), p.read(), s.read()
        assert p.count == 4 and (p.crs, p.transform) == (s.crs, s.transform)
    assert (cmap < 4).all()  # every pixel painted, none nodata
    np.testing.assert_array_equal(cmap, probs.argmax(axis=0))
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, rtol=1e-5)
    # every cell holds the prediction of its own patch
    for t in tile_grid(53, 41, 16, stride):
        want = clf.predict(scene[None, :, t.row:t.row + 16, t.col:t.col + 16])[0]
        np.testing.assert_allclose(probs[:, t.r0, t.c0], want, atol=1e-5)
        assert (cmap[t.r0:t.r1, t.c0:t.c1] == want.argmax()).all()
    assert res.patches == len(tile_grid(53, 41, 16, stride)) and res.masked == 0
    assert not list(out.parent.glob(".*tmp*"))


def test_nodata_stays_nodata(clf: Classifier, scene_factory, tmp_path: Path) -> None:
    src = scene_factory(48, 48, nodata=0)
    with rasterio.open(src, "r+") as ds:
        block = ds.read(window=((0, 20), (0, 20)))
        block[:, 2:5, 2:5] = 0  # a nodata hole in the first patch
        ds.write(block, window=((0, 20), (0, 20)))
        with_nan = ds.read(1)
    out = tmp_path / "c.tif"
    res = classify_scene(clf, src, out, probabilities=True, prob_dtype="uint8", progress=False)
    with rasterio.open(out) as o, rasterio.open(res.probabilities) as p:
        cmap, probs = o.read(1), p.read()
    assert res.masked == 1
    assert (cmap[:16, :16] == NODATA_CLASS).all() and (cmap[with_nan == 0] == NODATA_CLASS).all()
    assert (cmap[16:, :] < 4).all() and (cmap[:, 16:] < 4).all()
    assert (probs[:, :16, :16] == 255).all() and (probs[:, 16:, 16:] <= 254).all()
    with pytest.raises(InputMismatchError, match="NaN/Inf or nodata"):
        classify_scene(clf, src, tmp_path / "r.tif", nodata_policy="reject", progress=False)
    assert not (tmp_path / "r.tif").exists()  # nothing half-written


def test_scene_band_checks(clf: Classifier, scene_factory, tmp_path: Path) -> None:
    with pytest.raises(InputMismatchError, match="12 bands, the model expects 13"):
        classify_scene(clf, scene_factory(32, 32, bands=12), tmp_path / "x.tif", progress=False)
    with pytest.raises(InputMismatchError, match="smaller than"):
        classify_scene(clf, scene_factory(8, 32), tmp_path / "y.tif", progress=False)
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "y.tif").exists()
