"""Layouts: EuroSAT-MS, BigEarthNet (.npz, GeoTIFF folders, archives), generic paired; their errors."""

from __future__ import annotations

import io
import tarfile
import time

import numpy as np
import pytest
import torch

from cmkd_edge.data import open_dataset
from cmkd_edge.data.archive import extract_archive
from cmkd_edge.data.bigearthnet import BEN19_CLASSES, LABELS43_TO_19
from cmkd_edge.data.layouts import clear_cache, detect_layout
from cmkd_edge.errors import DataError

torch.set_num_threads(1)


# -- EuroSAT ------------------------------------------------------------------------------------
def test_real_eurosat_fixed_split(eurosat_dir) -> None:
    clear_cache()
    t0 = time.perf_counter()
    train = open_dataset(eurosat_dir, views=["ms"], split="train")
    elapsed = time.perf_counter() - t0
    val = open_dataset(eurosat_dir, views=["ms"], split="val")
    test = open_dataset(eurosat_dir, views=["ms"], split="test")
    assert (len(train), len(val), len(test)) == (100, 40, 60)
    assert train.describe()["layout"] == "eurosat-ms" and not train.describe()["synthetic"]
    assert train.class_names[0] == "AnnualCrop" and train.class_names[9] == "SeaLake"
    assert np.bincount(test.labels).tolist() == [6] * 10
    assert train.catalog is test.catalog  # loaded once
    assert elapsed < 20


def test_eurosat_without_labels_writes_and_reuses_split(make_eurosat, tmp_path) -> None:
    root = make_eurosat(per_class=5)
    split_file = tmp_path / "run" / "split.csv"
    ds = open_dataset(root, views=["rgb"], split="train", seed=1, split_file=split_file)
    assert split_file.is_file() and ds.class_names == ["A", "B", "C"]
    assert np.bincount(ds.labels).tolist() == [3, 3, 3]
    first = dict(ds.split_table)
    # another seed would draw another split, but the written file wins
    again = open_dataset(root, views=["rgb"], split="train", seed=99, split_file=tmp_path / "run")
    assert dict(again.split_table) == first and again.ids == ds.ids
    other = open_dataset(root, views=["rgb"], split="train", seed=99)
    assert dict(other.split_table) != first
    assert dict(open_dataset(root, views=["rgb"], seed=1).split_table) == first


def _labels_csv(root, rows, header="file,label,class_name,split") -> None:
    (root / "labels.csv").write_text(header + "\n" + "\n".join(rows) + "\n")


@pytest.mark.parametrize("case, match", [
    ("unknown", "unknown class 'Z'"),
    ("missing", "file not found"),
    ("duplicate", "duplicate row"),
    ("empty", "split 'val' is empty"),
    ("bad_split", "unknown split 'dev'"),
    ("mismatch", "label 0 means both 'B' and 'A'"),
])
def test_eurosat_labels_errors(case: str, match: str, make_eurosat) -> None:
    root = make_eurosat(per_class=2)
    rows = [f"A/A_{i},0,A,train" for i in range(2)] + [f"B/B_{i},1,B,test" for i in range(2)]
    rows = [r.replace(",", ".tif,", 1) for r in rows]
    if case == "unknown":
        rows.append("C/C_0.tif,2,Z,train")
    elif case == "missing":
        rows.append("C/C_9.tif,2,C,train")
    elif case == "duplicate":
        rows.append(rows[0])
    elif case == "bad_split":
        rows.append("C/C_0.tif,2,C,dev")
    elif case == "mismatch":
        rows[0] = "A/A_0.tif,0,B,train"
    _labels_csv(root, rows)
    with pytest.raises(DataError, match=match):
        open_dataset(root, views=["ms"], split="val")


def test_eurosat_wrong_band_count(make_eurosat, write_tif) -> None:
    root = make_eurosat(per_class=3)
    write_tif(root / "A" / "A_0.tif", np.zeros((12, 8, 8), np.uint16))
    with pytest.raises(DataError, match="A_0.tif has 12 bands, expected 13"):
        open_dataset(root, views=["ms"])


def test_unknown_layout_and_missing_path(tmp_path) -> None:
    with pytest.raises(DataError, match="data path not found"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no known dataset layout"):
        open_dataset(tmp_path / "empty")


# -- BigEarthNet --------------------------------------------------------------------------------
def test_bigearthnet_npz_multilabel(ben_dir) -> None:
    ds = open_dataset(ben_dir, views=["sar", "rgb"], split="all")
    assert detect_layout(ben_dir) == "bigearthnet-npz"
    assert ds.task == "multilabel" and tuple(ds.class_names) == BEN19_CLASSES
    x, y = ds[0]
    assert y.dtype == torch.float32 and y.shape == (19,) and set(y.unique().tolist()) <= {0.0, 1.0}
    assert x["sar"].shape == (2, 120, 120) and x["rgb"].shape == (3, 120, 120)
    sar = ds.view_batch("sar")
    assert -60 < sar.min() and sar.max() < 40 and -25 < sar[:, 0].mean() < -5
    assert sar[:, 1].mean() < sar[:, 0].mean()  # VH below VV
    assert ds.labels.sum(axis=1).min() >= 1
    parts = [open_dataset(ben_dir, views=["sar"], split=s, seed=0) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == 60
    assert not set(parts[0].ids) & set(parts[2].ids)


def test_bigearthnet_original_archives_match_npz(ben_dir) -> None:
    geo = open_dataset(ben_dir / "original", views=["ms", "sar"], split="all")
    npz = open_dataset(ben_dir, views=["ms", "sar"], split="all")
    assert geo.describe()["layout"] == "bigearthnet-geotiff" and len(geo) == 6
    for i, sid in enumerate(geo.ids):
        j = npz.ids.index(sid)
        assert np.array_equal(geo.catalog.sources["s2"][i], npz.catalog.sources["s2"][j])
        assert np.allclose(geo.catalog.sources["s1"][i], npz.catalog.sources["s1"][j])
        assert np.array_equal(geo.labels[i], npz.labels[npz.ids.index(sid)])


def test_bigearthnet_extracted_folder_and_single_archive(ben_dir) -> None:
    folder = extract_archive(ben_dir / "original" / "BigEarthNet-S2-Example.tar.bz2")
    s2_only = open_dataset(folder, views=["rgb"], split="all")
    assert list(s2_only.source_band_names) == ["s2"] and len(s2_only) == 6
    s1_only = open_dataset(ben_dir / "original" / "BigEarthNet-S1-Example.tar.bz2", views=["sar"],
                           split="all")
    assert sorted(s1_only.ids) == sorted(s2_only.ids)  # keyed by the corresponding S2 patch


def test_label_mapping_covers_43_classes() -> None:
    assert len(LABELS43_TO_19) == 43
    assert {v for v in LABELS43_TO_19.values() if v} == set(BEN19_CLASSES)
    assert sum(v is None for v in LABELS43_TO_19.values()) == 11


def _tar(path, members) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = 2
                tar.addfile(info, io.BytesIO(b"ok"))


@pytest.mark.parametrize("member, kind, match", [
    ("../evil.txt", "file", "unsafe path"),
    ("/abs/evil.txt", "file", "unsafe path"),
    ("pkg/link", "symlink", "link or special file"),
])
def test_archive_refuses_unsafe_members(member, kind, match, tmp_path) -> None:
    archive = tmp_path / "bad.tar.gz"
    _tar(archive, [("pkg/ok.txt", "file"), (member, kind)])
    with pytest.raises(DataError, match=match):
        extract_archive(archive, cache=tmp_path / "cache")
    assert not (tmp_path / "evil.txt").exists()
    assert not list((tmp_path / "cache" / "archives").glob("bad-*"))


def test_archive_corrupt(tmp_path) -> None:
    archive = tmp_path / "x.tar.bz2"
    archive.write_bytes(b"BZh9 not really")
    with pytest.raises(DataError, match="cannot read archive"):
        extract_archive(archive, cache=tmp_path / "cache")


# -- generic paired -----------------------------------------------------------------------------
def _paired(root, write_tif, n=6, sar_linear=False, odd_size=False):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        name = f"p{i}.tif"
        label = i % 2
        write_tif(root / "optical" / name, rng.integers(0, 3000, (4, 8, 8)).astype(np.uint16),
                  ["B02", "B03", "B04", "B08"])
        sar = rng.uniform(-25, -5, (2, 8, 8)).astype(np.float32)
        if sar_linear:
            sar = 10 ** (sar / 10)
        if odd_size and i == 2:
            sar = sar[:, :6, :6]
        write_tif(root / "radar" / name, sar, ["VV", "VH"])
        rows.append(f"{name},{['crop', 'water'][label]},{['train', 'val', 'test'][i % 3]}")
    (root / "labels.csv").write_text("file,label,split\n" + "\n".join(rows) + "\n")
    return root


def test_paired_layout(tmp_path, write_tif) -> None:
    root = _paired(tmp_path / "pairs", write_tif)
    ds = open_dataset(root, views=["rgb", "sar", "bands:B08"], split="train")
    assert detect_layout(root) == "paired" and len(ds) == 2
    assert ds.class_names == ["crop", "water"]
    assert ds.source_band_names == {"s2": ("B02", "B03", "B04", "B08"), "s1": ("VV", "VH")}
    x, _ = ds[0]
    assert torch.equal(x["rgb"], x["bands:B08"].new_tensor(ds.sample(0)["s2"][[2, 1, 0]]))
    assert ds.views["rgb"].deploy_input(ds.source_band_names).select == (2, 1, 0)
    with pytest.raises(DataError, match="band B05 not in"):
        open_dataset(root, views=["bands:B05"])


def test_paired_linear_sar_is_converted(tmp_path, write_tif) -> None:
    root = _paired(tmp_path / "lin", write_tif, sar_linear=True)
    ds = open_dataset(root, views=["sar"], split="all")
    assert ds.source_units["s1"] == "linear"
    assert -26 < ds.view_batch("sar").mean() < -4
    spec = ds.views["sar"].deploy_input(ds.source_band_names)  # units remembered from the data
    assert spec.to_db is True and spec.source_units == "linear"
    assert ds.views["sar"].deploy_input(ds.source_band_names, "db").to_db is False


def test_paired_size_mismatch(tmp_path, write_tif) -> None:
    root = _paired(tmp_path / "odd", write_tif, odd_size=True)
    with pytest.raises(DataError, match="co-registered files differ in size.*p2.tif"):
        open_dataset(root, views=["sar"])


def test_paired_missing_partner(tmp_path, write_tif) -> None:
    root = _paired(tmp_path / "miss", write_tif)
    (root / "radar" / "p4.tif").unlink()
    with pytest.raises(DataError, match="file not found: .*radar/p4.tif"):
        open_dataset(root, views=["sar"])
