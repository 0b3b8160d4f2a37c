"""Bad input data through the real CLI: training data (``train-teacher --data``) and device input
(``classify``). Each case must give one ``error:`` line naming the file and the problem, exit 2, and
no traceback; nothing is trained on bad data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .relhelp import assert_one_line_error, cli

rasterio = pytest.importorskip("rasterio")


def write_tif(path: Path, arr: np.ndarray, nodata: float | None = None,
              descriptions: list[str] | None = None) -> Path:
    from rasterio.transform import Affine

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "height": arr.shape[1], "width": arr.shape[2], "count": arr.shape[0],
               "dtype": arr.dtype.name, "crs": "EPSG:32632", "nodata": nodata,
               "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
        for i, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, d)
    return path


def eurosat(root: Path, classes: str = "ABC", per_class: int = 4, size: int = 8) -> Path:
    """A tiny EuroSAT-MS folder: <Class>/<Class>_<i>.tif, 13 uint16 bands."""
    rng = np.random.default_rng(0)
    for c in classes:
        for i in range(per_class):
            write_tif(root / c / f"{c}_{i}.tif", rng.integers(100, 3000, (13, size, size)).astype(np.uint16))
    return root


def labels_csv(root: Path, rows: list[str]) -> None:
    (root / "labels.csv").write_text("file,label,class_name,split\n" + "\n".join(rows) + "\n")


def standard_rows() -> list[str]:
    splits = ["train", "train", "val", "test"]
    return [f"{c}/{c}_{i}.tif,{k},{c},{splits[i]}" for k, c in enumerate("ABC") for i in range(4)]


def train(data: Path, tmp_path: Path, *extra: str):
    out = tmp_path / "run"
    res = cli("train-teacher", "--data", data, "--arch", "resnet-narrow", "--arch-opt", "width=4",
              "--epochs", "1", "--batch-size", "4", "--quiet", "--out", out, *extra)
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()  # nothing trained
    return res


# -- training data (cmkd_edge.data through train-teacher) ----------------------------------------
def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _corrupt_header(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[4:8] = b"\xf0\xff\xff\x7f"  # the offset of the first IFD points past the end of the file
    p.write_bytes(bytes(data))


def _replace_with_dir(p: Path) -> None:
    p.unlink()
    p.mkdir()


def _dangling_link(p: Path) -> None:
    p.unlink()
    p.symlink_to(p.parent / "gone.tif")


@pytest.mark.parametrize("case, damage, needles", [
    ("truncated", _truncate, ["A_0.tif", "truncated or corrupt"]),
    ("corrupt", _corrupt_header, ["A_0.tif", "truncated or corrupt"]),
    ("text", lambda p: p.write_text("this is a text file, not a GeoTIFF\n"), ["A_0.tif", "not a GeoTIFF"]),
    ("empty", lambda p: p.write_bytes(b""), ["A_0.tif", "not a GeoTIFF"]),
    ("directory", _replace_with_dir, ["A_0.tif", "not a readable file"]),
    ("dangling-link", _dangling_link, ["A_0.tif", "file not found"]),
])
def test_unreadable_geotiff(tmp_path: Path, case: str, damage, needles: list[str]) -> None:
    root = eurosat(tmp_path / "eurosat")
    damage(root / "A" / "A_0.tif")
    line = assert_one_line_error(train(root, tmp_path), *needles)
    assert "labels.csv" not in line  # there is no labels.csv: the message must not invent one


def test_missing_file_listed_in_labels(tmp_path: Path) -> None:
    root = eurosat(tmp_path / "eurosat")
    labels_csv(root, [*standard_rows(), "C/C_9.tif,2,C,train"])
    assert_one_line_error(train(root, tmp_path), "file not found", "C_9.tif", "labels.csv")


def test_wrong_band_count(tmp_path: Path) -> None:
    root = eurosat(tmp_path / "eurosat")
    write_tif(root / "B" / "B_1.tif", np.zeros((12, 8, 8), np.uint16))
    assert_one_line_error(train(root, tmp_path), "B_1.tif", "12 bands, expected 13")


@pytest.mark.parametrize("dtype, needles", [
    ("complex64", ["A_0.tif", "complex64"]),
    ("complex_int16", ["A_0.tif", "complex_int16"]),
])
def test_wrong_dtype_geotiff(tmp_path: Path, dtype: str, needles: list[str]) -> None:
    """Complex (SLC) rasters are refused: reading them as float32 would drop the imaginary part."""
    root = eurosat(tmp_path / "eurosat")
    if dtype == "complex_int16":
        from rasterio.transform import Affine

        p = root / "A" / "A_0.tif"
        with rasterio.open(p, "w", driver="GTiff", height=8, width=8, count=13, dtype="complex_int16",
                           transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
            dst.write(np.ones((13, 8, 8), np.complex64))
    else:
        write_tif(root / "A" / "A_0.tif", np.full((13, 8, 8), 1 + 2j, dtype))
    assert_one_line_error(train(root, tmp_path), *needles)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_pixels(tmp_path: Path, bad: float) -> None:
    root = eurosat(tmp_path / "eurosat")
    arr = np.full((13, 8, 8), 500, np.float32)
    arr[4, 2, 2] = bad
    write_tif(root / "C" / "C_3.tif", arr)
    assert_one_line_error(train(root, tmp_path), "C_3.tif", "NaN/Inf", "B05")


def test_nodata_pixels(tmp_path: Path) -> None:
    """A patch whose GeoTIFF declares nodata and has such pixels is refused (not trained on fill)."""
    root = eurosat(tmp_path / "eurosat")
    arr = np.full((13, 8, 8), 500, np.uint16)
    arr[:, :3, :3] = 0
    write_tif(root / "C" / "C_3.tif", arr, nodata=0)
    assert_one_line_error(train(root, tmp_path), "C_3.tif", "nodata")


def test_nodata_declared_but_absent_is_fine(tmp_path: Path) -> None:
    from cmkd_edge.data.readers import read_geotiff

    p = write_tif(tmp_path / "ok.tif", np.full((2, 4, 4), 7, np.uint16), nodata=0)
    arr, _ = read_geotiff(p, ("VV", "VH"))
    assert arr.shape == (2, 4, 4) and (arr == 7).all()


def test_patch_of_another_size_is_named(tmp_path: Path) -> None:
    root = eurosat(tmp_path / "eurosat")
    write_tif(root / "A" / "A_0.tif", np.ones((13, 6, 6), np.uint16))
    assert_one_line_error(train(root, tmp_path), "A_0.tif", "(13, 6, 6)", "(13, 8, 8)")


def _paired(root: Path, odd: bool = False) -> Path:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(6):
        name = f"p{i}.tif"
        write_tif(root / "s2" / name, rng.integers(0, 3000, (4, 8, 8)).astype(np.uint16),
                  descriptions=["B02", "B03", "B04", "B08"])
        size = 6 if odd and i == 4 else 8
        write_tif(root / "s1" / name, rng.uniform(-25, -5, (2, size, size)).astype(np.float32),
                  descriptions=["VV", "VH"])
        rows.append(f"{name},{['crop', 'water'][i % 2]},{['train', 'train', 'val', 'val', 'test', 'test'][i]}")
    (root / "labels.csv").write_text("file,label,split\n" + "\n".join(rows) + "\n")
    return root


def test_coregistered_pair_of_different_sizes(tmp_path: Path) -> None:
    root = _paired(tmp_path / "pairs", odd=True)
    assert_one_line_error(train(root, tmp_path, "--view", "sar"), "co-registered files differ in size",
                          "p4.tif", "8x8", "6x6")


@pytest.mark.parametrize("case, needles", [
    ("unknown-class", ["unknown class 'Z'", "labels.csv", "line 13"]),
    ("unknown-index", ["unknown class 7", "labels.csv", "line 2"]),
    ("duplicate", ["duplicate row for 'A/A_0.tif'", "labels.csv"]),
    ("no-rows", ["labels.csv has no rows"]),
    ("no-label-column", ["lacks column(s) label"]),
])
def test_labels_csv(tmp_path: Path, case: str, needles: list[str]) -> None:
    root = eurosat(tmp_path / "eurosat")
    rows = standard_rows()
    header = "file,label,class_name,split"
    if case == "unknown-class":
        rows[11] = "C/C_3.tif,2,Z,test"  # line 13 of the file
    elif case == "unknown-index":
        header = "file,label,split"
        rows = [f"{f},{lab},{sp}" for f, lab, _, sp in (r.split(",") for r in rows)]
        rows[0] = "A/A_0.tif,7,train"
    elif case == "duplicate":
        rows.append(rows[0])
    elif case == "no-rows":
        rows = []
    elif case == "no-label-column":
        header = "file,split"
        rows = [f"{f},{sp}" for f, _, _, sp in (r.split(",") for r in rows)]
    (root / "labels.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    assert_one_line_error(train(root, tmp_path), *needles)


def test_empty_split(tmp_path: Path) -> None:
    """Every row is 'train': the validation split the trainer needs is empty."""
    root = eurosat(tmp_path / "eurosat")
    labels_csv(root, [r.rsplit(",", 1)[0] + ",train" for r in standard_rows()])
    assert_one_line_error(train(root, tmp_path), "split 'val' is empty", "labels.csv")


def test_data_path_that_is_no_dataset(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert_one_line_error(train(tmp_path / "empty", tmp_path), "no known dataset layout")
    (tmp_path / "file.txt").write_text("x")
    assert_one_line_error(train(tmp_path / "file.txt", tmp_path), "is not a dataset")


# -- device input (runtime through classify) -------------------------------------------------------
def test_classify_truncated_and_corrupt_geotiff(factory_bundle: Path, tmp_path: Path) -> None:
    from bundle_factory import write_scene

    for name, size in (("patch.tif", 16), ("scene.tif", 64)):
        p = write_scene(tmp_path / name, size, size)
        _truncate(p)
        assert_one_line_error(cli("classify", factory_bundle, p, "--out", tmp_path / "map.tif",
                                  "--no-progress"), name, "not a readable GeoTIFF")
    q = write_scene(tmp_path / "hdr.tif", 16, 16)
    _corrupt_header(q)
    assert_one_line_error(cli("classify", factory_bundle, q), "hdr.tif", "not a readable GeoTIFF")
    assert not (tmp_path / "map.tif").exists()


def _damaged_blocks(path: Path, size: int) -> Path:
    """A deflate-compressed GeoTIFF whose header is fine but whose first pixel block is garbage."""
    from bundle_factory import write_scene

    plain = write_scene(path.with_name("plain_" + path.name), size, size)
    with rasterio.open(plain) as src:
        profile = {**src.profile, "compress": "deflate", "tiled": True, "blockxsize": 16, "blockysize": 16}
        data, desc = src.read(), src.descriptions
    plain.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = desc
    with rasterio.open(path) as src:
        off = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        n = int(src.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    raw = bytearray(path.read_bytes())
    raw[off:off + n] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("size", [16, 64])
def test_classify_damaged_pixel_blocks_keep_old_output(factory_bundle: Path, tmp_path: Path,
                                                        size: int) -> None:
    """Header fine, a pixel block corrupt: one line naming the file (patch and scene mode), and an
    existing class map at --out is left as it was (scenes are written to a temp file, then renamed)."""
    p = _damaged_blocks(tmp_path / "damaged.tif", size)
    out = tmp_path / "map.tif"
    out.write_bytes(b"previous class map")
    res = cli("classify", factory_bundle, p, "--out", out, "--no-progress")
    assert_one_line_error(res, "damaged.tif")
    assert out.read_bytes() == b"previous class map"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["damaged.tif", "map.tif"]  # no temp left


@pytest.mark.parametrize("content, needles", [
    (np.ones((13, 16, 16), np.complex64), ["dtype complex64"]),
    (np.array(["a", "b"]), ["shape [2]"]),
    (np.zeros((12, 16, 16), np.float32), ["12 bands, the model expects 13"]),
    (np.zeros((13, 8, 8), np.float32), ["8x8 pixels, the model expects 16x16"]),
])
def test_classify_bad_arrays(factory_bundle: Path, tmp_path: Path, content: np.ndarray,
                             needles: list[str]) -> None:
    np.save(tmp_path / "x.npy", content)
    assert_one_line_error(cli("classify", factory_bundle, tmp_path / "x.npy"), *needles)


def test_classify_pickled_npy_is_refused(factory_bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_one_line_error(cli("classify", factory_bundle, tmp_path / "evil.npy"), "evil.npy",
                          "not a readable .npy")
    assert not marker.exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_classify_nan_inf_policy(factory_bundle: Path, tmp_path: Path, bad: float) -> None:
    x = np.full((2, 13, 16, 16), 1000, np.float32)
    x[1, 3, 2, 2] = bad
    np.save(tmp_path / "x.npy", x)
    res = cli("classify", factory_bundle, tmp_path / "x.npy", "--json")  # default: mask
    assert res.exit_code == 0, res.stderr
    import json

    rows = json.loads(res.stdout)["results"]
    assert rows[0]["class"] is not None and rows[1]["nodata"] is True
    line = assert_one_line_error(cli("classify", factory_bundle, tmp_path / "x.npy", "--nodata-policy",
                                     "reject"), "1 of 2 patches contain NaN/Inf", "patch 1")
    assert "None" not in line


def test_classify_geotiff_nodata_pixels(factory_bundle: Path, tmp_path: Path) -> None:
    from bundle_factory import write_scene

    p = write_scene(tmp_path / "nd.tif", 16, 16, nodata=0)
    with rasterio.open(p, "r+") as f:
        x = f.read()
        x[:, 0, 0] = 0
        f.write(x)
    res = cli("classify", factory_bundle, p)
    assert res.exit_code == 0 and "nd.tif: nodata" in res.stdout
    assert_one_line_error(cli("classify", factory_bundle, p, "--nodata-policy", "reject"),
                          "contain NaN/Inf or nodata")


def test_classify_wrong_band_count_geotiff(factory_bundle: Path, tmp_path: Path) -> None:
    from bundle_factory import write_scene

    p = write_scene(tmp_path / "b12.tif", 16, 16, bands=12)
    assert_one_line_error(cli("classify", factory_bundle, p), "b12.tif has 12 bands, the model expects 13")
    s = write_scene(tmp_path / "s12.tif", 40, 40, bands=12)
    assert_one_line_error(cli("classify", factory_bundle, s, "--out", tmp_path / "m.tif", "--no-progress"),
                          "s12.tif has 12 bands")
