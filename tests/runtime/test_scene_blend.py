"""Blending overlapping windows: the weights, the streaming accumulator against a whole-scene reference,
nodata under blending, and the seam measurement (hard tiles vs blended)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from cmkd_edge.runtime.classifier import Classifier
from cmkd_edge.runtime.formats.blend import RowAccumulator, seam_stats, window_1d, window_lines
from cmkd_edge.runtime.scene import NODATA_CLASS, axis_tiles, classify_scene

from cmkd_edge.errors import ConfigError


@pytest.fixture(scope="module")
def clf(bundle_dir: Path):
    with Classifier.open(bundle_dir, backend="onnxruntime") as c:
        yield c


@pytest.mark.parametrize("kind", ["hann", "ramp"])
def test_windows_are_positive_symmetric_and_hann_partitions_unity(kind: str) -> None:
    w = window_1d(kind, 16)
    assert (w > 0).all() and np.allclose(w, w[::-1]) and w.argmax() in (7, 8) and w[0] < 0.1 * w.max()
    if kind == "hann":  # sin^2 + cos^2: windows at stride P/2 sum to 1 away from the scene edges
        np.testing.assert_allclose(w[:8] + w[8:], 1.0, rtol=1e-6)
    with pytest.raises(ConfigError, match="unknown blend"):
        window_1d("gauss", 16)


def test_accumulator_streams_what_a_whole_scene_sum_gives() -> None:
    rng = np.random.default_rng(0)
    h, w, p, k = 37, 29, 8, 3
    rows, cols = axis_tiles(h, p, 3), axis_tiles(w, p, 3)
    w2 = np.outer(window_1d("hann", p), window_1d("hann", p))
    probs = {(r, c): rng.dirichlet(np.ones(k)).astype(np.float32) for r, _, _ in rows for c, _, _ in cols}
    num, den = np.zeros((k, h, w)), np.zeros((h, w))
    for (r, c), pr in probs.items():
        num[:, r:r + p, c:c + p] += pr[:, None, None] * w2
        den[r:r + p, c:c + p] += w2
    acc, got = RowAccumulator(k, p, w), np.full((k, h, w), -1.0, np.float32)
    for i, (r, _, _) in enumerate(rows):
        for c, _, _ in cols:
            acc.add(probs[(r, c)], w2, r, c)
        until = rows[i + 1][0] if i + 1 < len(rows) else h
        for c0, out, seen in acc.finished(until, chunk=10):  # chunks that do not divide the width
            assert seen.all() and out.shape[1:] == (until - acc.top, min(10, w - c0))
            got[:, acc.top:until, c0:c0 + out.shape[2]] = out
        acc.advance(until, chunk=7)
    np.testing.assert_allclose(got, num / den, rtol=1e-5)


def test_blended_scene_equals_the_reference_blend(clf: Classifier, scene_factory, tmp_path: Path) -> None:
    src = scene_factory(45, 38)
    res = classify_scene(clf, src, tmp_path / "b.tif", stride=6, batch=4, probabilities=True, progress=False)
    with rasterio.open(src) as s, rasterio.open(res.out) as o, rasterio.open(res.probabilities) as pf:
        scene, cmap, probs = s.read(), o.read(1), pf.read()
    w2 = np.outer(window_1d("hann", 16), window_1d("hann", 16))
    num, den = np.zeros((4, 45, 38)), np.zeros((45, 38))
    for r, _, _ in axis_tiles(45, 16, 6):
        for c, _, _ in axis_tiles(38, 16, 6):
            p = clf.predict(scene[None, :, r:r + 16, c:c + 16])[0]
            num[:, r:r + 16, c:c + 16] += p[:, None, None] * w2
            den[r:r + 16, c:c + 16] += w2
    np.testing.assert_allclose(probs, num / den, atol=2e-6)
    np.testing.assert_array_equal(cmap, probs.argmax(axis=0))
    assert sum(res.histogram) == 45 * 38 and res.blend == "hann"


def test_blending_shrinks_nodata_to_the_invalid_pixels(clf: Classifier, scene_factory, tmp_path: Path) -> None:
    src = scene_factory(48, 48, nodata=0)
    with rasterio.open(src, "r+") as ds:
        block = ds.read(window=((0, 24), (0, 24)))
        block[:, 20:22, 20:22] = 0
        ds.write(block, window=((0, 24), (0, 24)))
    res = classify_scene(clf, src, tmp_path / "c.tif", stride=4, progress=False)
    with rasterio.open(res.out) as o:
        cmap = o.read(1)
    valid_cover = np.zeros((48, 48), int)  # windows covering each pixel that hold no invalid pixel
    for r, _, _ in axis_tiles(48, 16, 4):
        for c, _, _ in axis_tiles(48, 16, 4):
            if not (r <= 21 and r + 16 > 20 and c <= 21 and c + 16 > 20):
                valid_cover[r:r + 16, c:c + 16] += 1
    want = valid_cover == 0
    assert want[20:22, 20:22].all() and want.sum() <= 16  # the hole, and the few pixels no valid window reaches
    np.testing.assert_array_equal(cmap == NODATA_CLASS, want)
    assert (cmap[~want] < 4).all() and res.nodata_pixels == want.sum() and res.masked > 0


def test_seam_stats_counts_by_line() -> None:
    m = np.zeros((4, 6), int)
    m[:, 3:] = 1  # one vertical class edge between columns 2 and 3
    s = seam_stats(m, [], [3])
    assert (s.border_changes, s.border_pairs, s.interior_changes) == (4, 4, 0) and s.ratio == float("inf")
    s = seam_stats(m, [2], [1])
    assert (s.border_changes, s.interior_changes, s.interior_pairs) == (0, 4, 2 * 6 + 4 * 4)
    assert window_lines([(0, 0, 4), (4, 4, 7), (6, 7, 10)], 4) == [0, 4, 6, 8, 10]


def test_blending_removes_window_seams(clf: Classifier, scene_factory, tmp_path: Path) -> None:
    """Hard tiles (stride = patch, no blend) change class only on window borders; the blend anywhere."""
    src = scene_factory(160, 160, seed=3)
    ratios = {}
    for name, stride, blend in (("hard", 16, "none"), ("blend", 8, "hann")):
        r = classify_scene(clf, src, tmp_path / f"{name}.tif", stride=stride, blend=blend, progress=False)
        with rasterio.open(r.out) as o:
            lines = window_lines(axis_tiles(160, 16, stride), 16)
            ratios[name] = seam_stats(o.read(1), lines, lines)
    assert ratios["hard"].border_changes > 0 and ratios["hard"].interior_changes == 0
    assert ratios["blend"].interior_changes > 0 and ratios["blend"].ratio < 3.0
