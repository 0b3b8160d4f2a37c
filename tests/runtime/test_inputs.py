"""classify's input rules (runtime/inputs.py): messages that point the right way, and --out with patches."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from cmkd_edge.runtime.classifier import Classifier
from cmkd_edge.runtime.inputs import Patch, classify_inputs, read_input

from cmkd_edge.cli import main
from cmkd_edge.errors import DataError, InputMismatchError


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(res, *fragments: str) -> str:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output, res.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def test_channels_last_npy_is_named_as_such(bundle_dir: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "hwc.npy", np.full((16, 16, 13), 1000, np.float32))
    line = one_line_error(cli("classify", bundle_dir, tmp_path / "hwc.npy"),
                          "(16, 16, 13)", "looks channels-last", "bands first, (13, H, W)", "np.moveaxis")
    assert "has 16 bands" not in line
    np.save(tmp_path / "nhwc.npy", np.full((2, 16, 16, 13), 1000, np.float32))
    one_line_error(cli("classify", bundle_dir, tmp_path / "nhwc.npy"), "looks channels-last")


def test_sizes_say_which_way(bundle_dir: Path, tmp_path: Path, scene_factory) -> None:
    np.save(tmp_path / "small.npy", np.full((13, 8, 8), 1000, np.float32))
    line = one_line_error(cli("classify", bundle_dir, tmp_path / "small.npy"), "8x8", "resample or pad it to 16x16")
    assert "classify it as a scene" not in line and "classify larger" not in line
    np.save(tmp_path / "big.npy", np.full((13, 32, 32), 1000, np.float32))
    one_line_error(cli("classify", bundle_dir, tmp_path / "big.npy"), "32x32", "as a scene", "--out")
    small_tif = scene_factory(8, 8)
    one_line_error(cli("classify", bundle_dir, small_tif), "8x8 pixels, smaller than the model's 16x16 patch")


def test_directory_as_input(bundle_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "tiles").mkdir()
    line = one_line_error(cli("classify", bundle_dir, tmp_path / "tiles"), "is a directory", "/*.tif")
    assert "readable GeoTIFF" not in line


@pytest.mark.parametrize("size", [16, 40])
def test_jpeg_gets_our_error_and_no_rasterio_warning(bundle_dir: Path, tmp_path: Path, size: int) -> None:
    """A 3-band JPEG: 'has 3 bands ... (a JPEG file)', without rasterio's NotGeoreferencedWarning first."""
    jpg = tmp_path / "photo.jpg"
    with warnings.catch_warnings():  # writing a plain JPEG warns too; not what is tested
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(jpg, "w", driver="JPEG", width=size, height=size, count=3, dtype="uint8") as dst:
            dst.write(np.random.default_rng(0).integers(0, 255, (3, size, size), dtype=np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping the reader fails the test
        res = cli("classify", bundle_dir, jpg)
    line = one_line_error(res, "photo.jpg (a JPEG file) has 3 bands, the model expects 13", "GeoTIFF or .npy")
    assert "geotransform" not in res.output and "Warning" not in res.output, line


def test_read_input_kinds(bundle_dir: Path, tmp_path: Path, scene_factory) -> None:
    with Classifier.open(bundle_dir, backend="onnxruntime") as clf:
        spec = clf.manifest.input
    patch = read_input(scene_factory(16, 16, nodata=7), spec)
    assert isinstance(patch, Patch) and patch.x.shape == (13, 16, 16) and patch.nodata == 7
    scene = scene_factory(40, 50)
    assert read_input(scene, spec) == scene
    with pytest.raises(DataError, match="does not exist"):
        read_input(tmp_path / "nope.tif", spec)
    (tmp_path / "bad.tif").write_text("not a tiff")
    with pytest.raises(DataError, match="not a readable GeoTIFF"):
        read_input(tmp_path / "bad.tif", spec)
    with pytest.raises(InputMismatchError, match="smaller than"):
        read_input(scene_factory(8, 40), spec)


def test_out_with_patches_only_is_reported(bundle_dir: Path, tmp_path: Path, scene_factory) -> None:
    """--out is for scene class maps: with patches only, say nothing was written (it used to be silent)."""
    tif, out = scene_factory(16, 16), tmp_path / "map.tif"
    res = cli("classify", bundle_dir, tif, "--out", out)
    assert res.exit_code == 0, res.output
    assert f"{tif.name}: class_" in res.stdout
    assert f"warning: --out {out} was not written" in res.stderr and "every input was a patch" in res.stderr
    assert not out.exists()
    res = cli("classify", bundle_dir, tif, "--out", out, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["results"][0]["class"].startswith("class_")
    with Classifier.open(bundle_dir, backend="onnxruntime") as clf:
        run = classify_inputs(clf, [tif, scene_factory(40, 40)], out=out, progress=False)
    assert run.notices == [] and out.exists()  # a scene among them: --out is used, no notice


def test_bad_input_late_in_the_list_fails_before_any_scene(bundle_dir: Path, tmp_path: Path,
                                                            scene_factory) -> None:
    scene, out = scene_factory(40, 40), tmp_path / "map.tif"
    np.save(tmp_path / "hwc.npy", np.full((16, 16, 13), 1000, np.float32))
    one_line_error(cli("classify", bundle_dir, scene, tmp_path / "missing.tif", "--out", out), "does not exist")
    assert not out.exists()


def test_debug_is_accepted_after_the_subcommand(bundle_dir: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "small.npy", np.full((13, 8, 8), 1000, np.float32))
    res = CliRunner().invoke(main, ["classify", str(bundle_dir), str(tmp_path / "small.npy"), "--debug"])
    assert isinstance(res.exception, InputMismatchError)  # the traceback is shown, not one line
    assert "No such option" not in res.output and "Did you mean" not in res.output
    res = CliRunner().invoke(main, ["--debug", "classify", str(bundle_dir), str(tmp_path / "small.npy")])
    assert isinstance(res.exception, InputMismatchError)
    res = cli("classify", bundle_dir, tmp_path / "small.npy")
    assert res.exit_code == 2 and not isinstance(res.exception, InputMismatchError)


def test_not_a_bundle_points_to_export(tmp_path: Path) -> None:
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"\x80\x02")
    one_line_error(cli("bundle", ckpt, "--verify"), "is not a bundle", "run `cmkd-edge export` first")
