"""Radar chips: the chip layout, the chip and edge-radar views, and augmentation chosen per view."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cmkd_edge.runtime.contract.specs import PreprocessSpec
from PIL import Image

from cmkd_edge.data import open_dataset
from cmkd_edge.data.augment import augmented_views
from cmkd_edge.data.layouts import default_view, detect_layout
from cmkd_edge.data.views import EdgeRadarView, degrade_chip, parse_view, with_input_size
from cmkd_edge.errors import ConfigError, DataError, UnknownNameError

torch.set_num_threads(1)
# the shared sample data lives beside the checkout (<clone>/../shared/data); tests skip without it
MSTAR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mstar_soc"
CLASSES = ("2S1", "BMP2", "T72")


def _chip(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    """A speckled chip with a class-dependent bright target in the middle."""
    img = rng.gamma(1.0, 20.0, (size, size))
    c = size // 2
    img[c - 4:c + 4, c - 2 - k:c + 2 + k] += 150
    return np.clip(img, 0, 255).astype(np.uint8)


def make_chips(root: Path, per_class: int = 4, size: int = 32, suffix: str = ".png",
               extra_columns: bool = True) -> Path:
    """A chip folder in the MSTAR convention: <split>/<Class>/<n><suffix> + labels.csv."""
    rng = np.random.default_rng(0)
    rows = ["file,label,class_name,split" + (",depression_deg,md5" if extra_columns else "")]
    for k, cls in enumerate(CLASSES):
        for i in range(per_class):
            split = ("train", "train", "val", "test")[i % 4]
            rel = f"jpeg/{split}/{cls}/{i:05d}{suffix}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_chip(rng, k, size)).save(root / rel)
            rows.append(f"{rel},{k},{cls},{split}" + (",17,abc" if extra_columns else ""))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def chips(tmp_path: Path) -> Path:
    return make_chips(tmp_path / "chips")


def test_chip_layout_reads_labels_csv_and_ignores_extra_columns(chips: Path) -> None:
    assert detect_layout(chips) == "chips" and default_view(chips) == "chip"
    ds = open_dataset(chips, views=["chip"], split="train")
    assert ds.class_names == list(CLASSES) and len(ds) == 6
    assert ds.source_band_names == {"chip": ("MAG",)} and ds.source_units == {"chip": "magnitude_u8"}
    x = ds.view_arrays(0)["chip"]
    want = np.asarray(Image.open(chips / ds.ids[0]), np.float32)[None]
    np.testing.assert_array_equal(x, want)
    assert [len(open_dataset(chips, views=["chip"], split=s)) for s in ("val", "test")] == [3, 3]


def test_chip_folders_without_labels_csv(tmp_path: Path) -> None:
    root = make_chips(tmp_path / "c", suffix=".jpeg")
    (root / "labels.csv").unlink()
    shutil.rmtree(root / "jpeg" / "val")
    shutil.rmtree(root / "jpeg" / "test")
    # class folders directly under jpeg/: the split is drawn (seeded)
    for d in (root / "jpeg" / "train").iterdir():
        d.rename(root / "jpeg" / d.name)
    ds = open_dataset(root, views=["chip"], split="all")
    assert ds.class_names == list(CLASSES) and len(ds) == 6


def test_one_band_uint8_tiff_chips_are_chips_not_eurosat(tmp_path: Path) -> None:
    root = make_chips(tmp_path / "t", suffix=".tif")
    assert detect_layout(root) == "chips"
    assert open_dataset(root, views=["chip"], split="train").view_arrays(0)["chip"].shape == (1, 32, 32)


@pytest.mark.parametrize("write, fragment", [
    (lambda p: p.write_bytes(b"not an image"), "not an image Pillow can read"),
    (lambda p: Image.fromarray((np.zeros((32, 32, 3)) + [0, 9, 0]).astype(np.uint8)).save(p), "colour image"),
    (lambda p: p.write_bytes(Image.fromarray(np.zeros((32, 32), np.uint8)).tobytes()[:10]),
     "not an image Pillow can read"),
])
def test_bad_chip_is_one_data_error_naming_the_file(chips: Path, write, fragment: str) -> None:
    from cmkd_edge.data import clear_cache

    bad = chips / "jpeg" / "train" / "BMP2" / "00000.png"
    write(bad)
    clear_cache()
    with pytest.raises(DataError) as exc:
        open_dataset(chips, views=["chip"], split="train")
    assert fragment in exc.value.message and "00000.png" in exc.value.message


def test_sixteen_bit_chip_is_refused(tmp_path: Path) -> None:
    from cmkd_edge.runtime.formats.chips import read_chip

    p = tmp_path / "c16.png"
    Image.fromarray(np.full((8, 8), 300, np.uint16)).save(p)
    with pytest.raises(DataError, match="8-bit"):
        read_chip(p)


def test_chip_view_crop_and_scales_match_the_deploy_spec(chips: Path) -> None:
    ds = open_dataset(chips, views=["chip:crop=20,scale=db", "chip:crop=20,scale=log", "chip"],
                      split="train")
    full = ds.view_arrays(1)["chip"][None]
    for name in ("chip:crop=20,scale=db", "chip:crop=20,scale=log"):
        spec = ds.views[name].deploy_input(ds.source_band_names)
        assert spec.crop == (20, 20) and spec.source_units == "magnitude_u8"
        assert spec.units == ds.views[name].units  # what the network sees, both ways
        # the view yields unclipped values, the network clips first (InputNorm): the same numbers
        lo, hi = ds.views[name].clip
        np.testing.assert_array_equal(np.clip(ds.view_arrays(1)[name], lo, hi),
                                      spec.apply(full, normalise=False)[0])
    db = ds.views["chip:crop=20,scale=db"]
    assert db.units == "db" and db.clip == (0.0, 48.2)
    # norm=mean: the view clips, then centres; the spec does the same and the net does not clip
    ds2 = open_dataset(chips, views=["chip:crop=20,scale=db,norm=mean", "chip"], split="train")
    view = ds2.views["chip:crop=20,scale=db,norm=mean"]
    spec = view.deploy_input(ds2.source_band_names)
    assert view.clip is None and spec.clip == (0.0, 48.2) and spec.centre and spec.clip_in_net is None
    got = ds2.view_arrays(1)["chip:crop=20,scale=db,norm=mean"]
    np.testing.assert_allclose(got, spec.apply(ds2.view_arrays(1)["chip"][None], normalise=False)[0],
                               atol=1e-5)
    assert abs(float(got.mean())) < 1e-4
    assert ds.view_arrays(1)["chip:crop=20,scale=db"].shape == (1, 20, 20)


def test_view_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown scale"):
        parse_view("chip:scale=ln")
    with pytest.raises(ConfigError, match="unknown option"):
        parse_view("chip:zoom=2")
    with pytest.raises(UnknownNameError, match="augmentation"):
        parse_view("chip:aug=rotate")
    with pytest.raises(ConfigError, match="looks"):
        parse_view("edge-radar:looks=0")
    with pytest.raises(ConfigError, match="needs a log scale"):
        parse_view("chip:norm=mean")
    with pytest.raises(ConfigError, match="unknown norm"):
        parse_view("chip:scale=db,norm=max")
    assert parse_view("edge-radar:scale=db,norm=mean").norm == "mean"
    assert with_input_size("edge-radar:looks=2", 88) == "edge-radar:looks=2,crop=88"
    assert with_input_size("chip", 88) == "chip:crop=88"
    with pytest.raises(ConfigError, match="chip views"):
        with_input_size("rgb", 88)
    with pytest.raises(ConfigError, match="contradicts"):
        with_input_size("chip:crop=64", 88)


def test_edge_radar_degradation_is_coarse_speckled_and_seeded() -> None:
    rng = np.random.default_rng(0)
    mag = np.full((1, 16, 16), 100.0, np.float32)
    mag[0, :8] = 30.0
    out = degrade_chip(mag, 4, 1.0, np.random.default_rng(1))
    # coarser resolution: constant over each 4x4 block; 8-bit magnitude
    blocks = out[0].reshape(4, 4, 4, 4)
    assert (blocks == blocks[:, :1, :, :1]).all()
    assert out.min() >= 0 and out.max() <= 255 and (out == np.round(out)).all()
    # fewer looks: unit-mean speckle in intensity (mean over many chips within 3 %)
    many = degrade_chip(np.full((400, 16, 16), 100.0, np.float32), 2, 1.0, rng)
    assert abs(float(np.mean(many.astype(np.float64) ** 2)) / 1e4 - 1.0) < 0.03
    assert np.std(many.astype(np.float64) ** 2) / 1e4 > 0.8  # single look: intensity std ~ mean
    # infinite looks: block average only
    no_speckle = degrade_chip(mag, 2, float("inf"), rng)
    np.testing.assert_array_equal(no_speckle, mag)
    np.testing.assert_array_equal(degrade_chip(mag, 4, 1.0, np.random.default_rng(1)), out)
    with pytest.raises(DataError, match="does not divide"):
        degrade_chip(np.zeros((1, 10, 10), np.float32), 4, 1.0, rng)


def test_edge_radar_is_synthetic_and_deploys_on_the_degraded_chip(chips: Path) -> None:
    ds = open_dataset(chips, views=["edge-radar:crop=24", "edge-radar"], split="test", seed=3)
    view = ds.views["edge-radar:crop=24"]
    assert isinstance(view, EdgeRadarView) and view.synthetic and ds.describe()["synthetic"]
    assert view.info()["synthetic"] and view.raw_spec == "edge-radar:factor=2,looks=1"
    spec = view.deploy_input(ds.source_band_names)
    # the device feeds the whole degraded chip; the graph crops the centre: same values as training
    raw = ds.view_batch("edge-radar", [0, 1])
    np.testing.assert_array_equal(spec.apply(raw, normalise=False), ds.view_batch("edge-radar:crop=24", [0, 1]))
    # seeded per (seed, sample): evaluation sees one realisation per chip
    again = open_dataset(chips, views=["edge-radar"], split="test", seed=3).view_batch("edge-radar", [0])
    np.testing.assert_array_equal(again, raw[:1])


def test_augmentation_is_chosen_per_view(chips: Path) -> None:
    """Chips get random crops but never a rotation or flip; optical views keep D4; a teacher and
    a student view of the same chip get the same window."""
    ds = open_dataset(chips, views=["chip:crop=24", "edge-radar:crop=24,looks=1"],
                      split="train", augment=True)
    names = list(ds.views)
    plain = open_dataset(chips, views=["chip"], split="train")
    full = plain.view_arrays(0)["chip"][0]
    windows = {(t, left) for t in range(9) for left in range(9)}
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        out = ds.view_arrays(0)
        crop = out[names[0]][0]
        match = [(t, left) for t, left in windows
                 if np.array_equal(full[t:t + 24, left:left + 24], crop)]
        assert match, "a chip view must be an un-rotated window of the chip"
        seen.add(match[0])
        # the student's window is the teacher's: its block means follow the same chip pixels
        assert out[names[1]].shape == (1, 24, 24)
    assert len(seen) > 1  # random, not the centre every time
    assert parse_view("chip").augment == ("crop",) and parse_view("rgb").augment == ("dihedral",)
    assert parse_view("chip:aug=none").augment == ()
    # optical views still rotate: a D4 element, same for every view of the sample
    rng = np.random.default_rng(0)
    ks = set()
    for _ in range(20):
        arr = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
        sample = {"s2": np.repeat(arr, 13, axis=0)}
        o = augmented_views({"rgb": parse_view("rgb")}, sample, rng)["rgb"][0]
        ks.add(o.tobytes())
    assert len(ks) > 2


def test_spec_crop_and_log_round_trip_and_validate() -> None:
    from cmkd_edge.errors import BundleError

    spec = PreprocessSpec(source="chip", source_bands=("MAG",), source_units="magnitude_u8", select=(0,),
                          to_log=True, crop=(88, 88), mean=(1.0,), std=(2.0,))
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec and spec.units == "log1p_magnitude_u8"
    assert spec.db_factor == 20.0 and spec.network_hw((128, 128)) == (88, 88)
    with pytest.raises(BundleError, match="both"):
        PreprocessSpec(source="chip", source_bands=("MAG",), source_units="magnitude_u8", select=(0,),
                       to_log=True, to_db=True)
    with pytest.raises(BundleError, match="crop"):
        PreprocessSpec.from_dict({**spec.to_dict(), "crop": [88]})
    with pytest.raises(BundleError, match="larger"):
        spec.network_hw((64, 64))
    with pytest.raises(BundleError, match="centre.*needs a log scale"):
        PreprocessSpec.from_dict({**spec.to_dict(), "to_log": False, "centre": True})
    with pytest.raises(BundleError, match="centre"):
        PreprocessSpec.from_dict({**spec.to_dict(), "centre": "yes"})
    assert PreprocessSpec.from_dict({**spec.to_dict(), "centre": True}).centre
    x = np.zeros((1, 1, 128, 128), np.float32)
    x[0, 0, 20:108, 20:108] = 255.0  # exactly the centre 88x88
    assert (spec.apply(x, normalise=False) == np.float32(np.log1p(255.0))).all()


@pytest.mark.skipif(not (MSTAR / "labels.csv").is_file(), reason=f"MSTAR SOC sample not found at {MSTAR}")
def test_real_mstar_chips_in_the_chip_layout(tmp_path: Path) -> None:
    """A handful of the real chips in their own labels.csv convention (all 5,172 take seconds)."""
    lines = (MSTAR / "labels.csv").read_text().splitlines()
    keep = [lines[0]]
    for cls in ("2S1", "BMP2"):
        for split in ("train", "val", "test"):
            keep.append(next(row for row in lines[1:] if f",{cls},{split}," in row))
    root = tmp_path / "mstar"
    for row in keep[1:]:
        rel = row.split(",")[0]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(MSTAR / rel, root / rel)
    (root / "labels.csv").write_text("\n".join(keep) + "\n")
    ds = open_dataset(root, views=["chip:crop=88,scale=db"], split="test")
    assert ds.class_names[0] == "2S1" and len(ds) == 2 and ds.describe()["layout"] == "chips"
    x = ds.view_arrays(0)["chip:crop=88,scale=db"]
    assert x.shape == (1, 88, 88) and 0 < float(np.median(x)) < 48.2


def test_gain_augmentation_is_one_gain_per_sample_shared_by_views(chips: Path) -> None:
    from cmkd_edge.data.augment import GAIN_RANGE

    ds = open_dataset(chips, views=["chip:crop=24,aug=crop+gain", "chip:aug=gain"], split="train",
                      augment=True)
    full = open_dataset(chips, views=["chip"], split="train").view_arrays(2)["chip"][0]
    gains = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        out = ds.view_arrays(2)
        whole, crop = out["chip:aug=gain"][0], out["chip:crop=24,aug=crop+gain"][0]
        ok = (full > 0) & (whole < 255)
        ratio = whole[ok] / full[ok]
        g = float(np.median(ratio))
        assert GAIN_RANGE[0] <= g <= GAIN_RANGE[1] and np.allclose(ratio, g, rtol=1e-5)
        assert any(np.array_equal(whole[t:t + 24, left:left + 24], crop)
                   for t in range(9) for left in range(9))  # the same gain in both views
        gains.add(round(g, 4))
    assert len(gains) == 4
    # evaluation never sees a gain or a random crop
    assert np.array_equal(open_dataset(chips, views=["chip:aug=gain"], split="train").view_arrays(2)
                          ["chip:aug=gain"][0], full)
