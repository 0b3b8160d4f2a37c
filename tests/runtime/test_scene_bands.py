"""Per-band products (STAC items, band folders, Sentinel-1 VV/VH) as scenes, and GIS-ready COG outputs.

The product is real EuroSAT pixels cut into one COG per band at 10/20/60 m (``product_factory.py``).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from cmkd_edge.runtime.classifier import Classifier
from cmkd_edge.runtime.formats.bandsources import normalize_band, open_source
from cmkd_edge.runtime.scene import NODATA_CLASS, classify_scene
from rasterio.windows import Window

from cmkd_edge.errors import InputMismatchError

sys.path.insert(0, str(Path(__file__).parent))
from product_factory import (  # noqa: E402
    EUROSAT_ORDER,
    eurosat_mosaic,
    write_mask,
    write_s1_pair,
    write_s2_bands,
    write_stac_item,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "eurosat_ms_200"
pytest.importorskip("pystac")
pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"shared EuroSAT sample not at {DATA}")


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("s2product")
    mosaic = eurosat_mosaic(DATA, tiles=6)  # 384 x 384 px at 10 m: big enough for one overview level
    bands = write_s2_bands(root / "T32ULU", mosaic)
    item = write_stac_item(root / "T32ULU" / "item.json", bands)
    return {"root": root, "mosaic": mosaic, "bands": bands, "item": item}


@pytest.fixture(scope="module")
def clf(bundle_dir: Path):
    with Classifier.open(bundle_dir, backend="onnxruntime") as c:
        yield c


def test_band_names_normalise() -> None:
    assert [normalize_band(n) for n in ("B4", "b04", "B8A", "b8a", "B12", "vv", "red")] == \
        ["B04", "B04", "B8A", "B8A", "B12", "VV", "RED"]


def test_stac_bands_are_resampled_on_the_fly(product: dict) -> None:
    """10 m bands read exactly; 20/60 m bands equal GDAL's bilinear warp; windows agree with the whole."""
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    src = open_source(product["item"], EUROSAT_ORDER)
    try:
        assert (src.height, src.width) == (384, 384) and src.transform.a == 10.0
        full = src.read(Window(0, 0, 384, 384))
        assert full.dtype == np.float32 and full.shape == (13, 384, 384)
        for i, b in enumerate(EUROSAT_ORDER):
            if b in ("B02", "B03", "B04", "B08"):
                np.testing.assert_array_equal(full[i], product["mosaic"][i])
        i = EUROSAT_ORDER.index("B11")  # a 20 m band: compare with an independent whole-band warp
        with rasterio.open(product["bands"]["B11"]) as coarse:
            want = np.zeros((384, 384), np.float32)
            reproject(coarse.read(1).astype(np.float32), want, src_transform=coarse.transform, src_crs=coarse.crs,
                      dst_transform=src.transform, dst_crs=src.crs, resampling=Resampling.bilinear)
        inner = (slice(4, -4), slice(4, -4))  # the outermost pixels depend on edge handling only
        np.testing.assert_allclose(full[i][inner], want[inner], atol=1.0)
        assert not np.array_equal(full[i], np.repeat(np.repeat(full[i][::2, ::2], 2, 0), 2, 1))  # not blocky
        part = src.read(Window(37, 101, 90, 50))
        np.testing.assert_allclose(part, full[:, 101:151, 37:127], atol=1.0)
    finally:
        src.close()


def test_stac_folder_and_stacked_give_the_same_map(product: dict, clf: Classifier, tmp_path: Path) -> None:
    src = open_source(product["item"], EUROSAT_ORDER)
    stacked = tmp_path / "stacked.tif"
    with rasterio.open(stacked, "w", driver="GTiff", height=384, width=384, count=13, dtype="float32",
                       crs=src.crs, transform=src.transform) as dst:
        dst.write(src.read(Window(0, 0, 384, 384)))
        dst.descriptions = EUROSAT_ORDER
    src.close()
    maps = {}
    for name, path in (("stac", product["item"]), ("folder", product["item"].parent), ("stacked", stacked)):
        r = classify_scene(clf, path, tmp_path / f"{name}.tif", stride=16, progress=False)
        with rasterio.open(r.out) as o:
            maps[name] = o.read(1)
            assert o.crs == "EPSG:32632" and o.transform.a == 10.0
    assert (maps["stac"] < 4).all()
    np.testing.assert_array_equal(maps["stac"], maps["stacked"])
    np.testing.assert_array_equal(maps["folder"], maps["stacked"])


def test_common_names_and_missing_bands(product: dict, clf: Classifier, tmp_path: Path) -> None:
    by_common = write_stac_item(product["item"].with_name("common.json"), product["bands"], names=False)
    src = open_source(by_common, EUROSAT_ORDER)
    src.close()
    partial = {b: p for b, p in product["bands"].items() if b not in ("B8A", "B09")}
    broken = write_stac_item(product["item"].with_name("partial.json"), partial)
    with pytest.raises(InputMismatchError, match="no asset for band.*B09,B8A"):
        classify_scene(clf, broken, tmp_path / "x.tif", progress=False)
    assert not (tmp_path / "x.tif").exists()


def test_cli_stac_item_to_validated_cog(product: dict, bundle_dir: Path, tmp_path: Path) -> None:
    """The user path: a STAC item in, a COG out that rio-cogeo accepts, legend-ready in GIS tools."""
    from rio_cogeo.cogeo import cog_validate

    from cmkd_edge.cli import main

    out = tmp_path / "maps" / "classes.tif"
    res = CliRunner().invoke(main, ["classify", str(bundle_dir), str(product["item"]), "--out", str(out),
                                    "--probabilities", "--confidence", "--no-progress", "--quicklook"])
    assert res.exit_code == 0, res.output
    for p in (out, out.with_name("classes_probs.tif"), out.with_name("classes_confidence.tif")):
        valid, errors, warns = cog_validate(str(p))
        assert valid and not errors, (p, errors, warns)
    with rasterio.open(out) as o:
        assert o.overviews(1) == [2] and o.profile["tiled"] and o.profile["blockxsize"] == 256
        cmap, ovr = o.read(1), o.read(1, out_shape=(192, 192))
        assert set(np.unique(ovr)) <= set(np.unique(cmap))  # mode overviews hold only real classes
        assert o.colormap(1)[0][:3] != o.colormap(1)[1][:3] and o.colormap(1)[NODATA_CLASS][3] == 0
        assert json.loads(o.tags(1)["class_names"]) == [f"class_{k}" for k in range(4)]
        assert o.descriptions == ("class",)
    rat = ET.parse(str(out) + ".aux.xml").getroot()
    assert [c.text for c in rat.iter("Category")] == [f"class_{k}" for k in range(4)]
    assert [r.findall("F")[1].text for r in rat.iter("Row")] == [f"class_{k}" for k in range(4)]
    with rasterio.open(out.with_name("classes_probs.tif")) as p, \
            rasterio.open(out.with_name("classes_confidence.tif")) as c:
        assert p.descriptions == tuple(f"class_{k}" for k in range(4)) and p.overviews(1) == [2]
        probs, conf = p.read(), c.read(1)
    np.testing.assert_array_equal(probs.argmax(axis=0), cmap)
    np.testing.assert_allclose(conf, probs.max(axis=0), rtol=1e-6)
    assert out.with_name("classes_quicklook.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_stac_item_is_one_line(bundle_dir: Path, tmp_path: Path) -> None:
    from cmkd_edge.cli import main

    bad = tmp_path / "item.json"
    bad.write_text('{"type": "Feature", "id": 3')
    res = CliRunner().invoke(main, ["classify", str(bundle_dir), str(bad), "--out", str(tmp_path / "o.tif")])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "not a readable STAC Item" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_sentinel1_vv_vh_files_with_a_mask(tmp_path: Path) -> None:
    """A SAR bundle reads VV at 10 m and VH at 20 m from a folder; a 20 m data mask (nearest) masks pixels."""
    from bundle_factory import build_onnx
    from cmkd_edge.runtime.contract.manifest import Artifact, Manifest, write_manifest
    from cmkd_edge.runtime.contract.specs import InputSpec, OutputSpec, PreprocessSpec

    root = tmp_path / "sar_bundle"
    build_onnx(root / "model.onnx", bands=2, size=16, classes=3)
    write_manifest(root, Manifest(
        task="multiclass", class_names=("water", "field", "urban"),
        input=InputSpec(modality="sar", band_names=("VV", "VH"), units="db", shape=(None, 2, 16, 16),
                        expected_range=(-50.0, 10.0)),
        output=OutputSpec(activation="softmax"),
        preprocess=PreprocessSpec(source="s1", source_bands=("VV", "VH"), source_units="db", select=(0,)),
        artifacts=(Artifact(id="onnx-fp32", path="model.onnx", format="onnx", precision="fp32",
                            backend="onnxruntime", files=("model.onnx",), opset=17, ir_version=8),)))
    rng = np.random.default_rng(0)
    vv = rng.normal(-12, 3, (96, 96))
    folder = tmp_path / "S1A_IW_GRDH_20260601"
    write_s1_pair(folder, vv, vv - 7, res_vh=20)
    valid = np.ones((48, 48), np.uint8)
    valid[:8, :8] = 0  # the top-left 16 x 16 px at 10 m have no data
    write_mask(folder / "S1A_IW_GRDH_20260601_mask.tif", valid, 20)
    with Classifier.open(root, backend="onnxruntime") as sar:
        r = classify_scene(sar, folder, tmp_path / "s1.tif", progress=False, blend="none")
    with rasterio.open(r.out) as o:
        cmap = o.read(1)
    assert r.masked == 1 and (cmap[:16, :16] == NODATA_CLASS).all() and (cmap[16:, :] < 3).all()
    assert r.nodata_pixels == 256 and sum(r.histogram) == 96 * 96 - 256
