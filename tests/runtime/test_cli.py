"""`cmkd-edge classify` / `profile`: outputs, one-line errors, and a torch-free subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from cmkd_edge.runtime.contract.bundle import pack_bundle

from cmkd_edge.cli import main


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("cmd", ["classify", "profile"])
def test_help_has_example(cmd: str) -> None:
    res = run(cmd, "--help")
    assert res.exit_code == 0 and "Example:" in res.output and f"cmkd-edge {cmd}" in res.output


def test_classify_patches(bundle_dir: Path, tmp_path: Path, scene_factory) -> None:
    x = np.random.default_rng(0).uniform(0, 10000, (2, 13, 16, 16)).astype(np.float32)
    np.save(tmp_path / "two.npy", x)
    tif = scene_factory(16, 16)
    res = run("classify", bundle_dir, tmp_path / "two.npy", tif, "--json", "--backend", "onnxruntime")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["backend"] == "onnxruntime" and len(data["results"]) == 3
    assert {r["input"] for r in data["results"]} == {"two.npy[0]", "two.npy[1]", tif.name}
    assert all(r["class"].startswith("class_") and 0 < r["probability"] <= 1 for r in data["results"])
    res = run("classify", bundle_dir, tif)
    assert res.exit_code == 0 and f"{tif.name}: class_" in res.stdout


def test_classify_scene_needs_out(bundle_dir: Path, tmp_path: Path, scene_factory) -> None:
    scene = scene_factory(40, 50)
    res = run("classify", bundle_dir, scene)
    assert res.exit_code == 2 and res.output.startswith("error: ") and "--out" in res.output
    res = run("classify", bundle_dir, scene, "--out", tmp_path / "map.tif", "--stride", "8",
              "--probabilities", "--no-progress")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "map.tif") as o:
        assert o.shape == (40, 50) and o.crs.to_epsg() == 32633
    assert (tmp_path / "map_probs.tif").exists()


def test_several_scenes_need_out_to_be_a_directory(bundle_dir: Path, tmp_path: Path, scene_factory) -> None:
    a, b = scene_factory(40, 50), scene_factory(40, 40)
    existing = tmp_path / "existing.tif"
    existing.write_bytes(b"keep me")
    res = CliRunner().invoke(main, ["classify", str(bundle_dir), str(a), str(b), "--out", str(existing),
                                    "--no-progress"])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and "2 scenes need --out to be a directory" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert existing.read_bytes() == b"keep me"
    res = run("classify", bundle_dir, a, b, "--out", tmp_path / "maps", "--no-progress")
    assert res.exit_code == 0, res.output
    maps = {f"{a.stem}_classes.tif", f"{b.stem}_classes.tif"}  # each with its category sidecar (cog.py)
    assert {p.name for p in (tmp_path / "maps").iterdir()} == maps | {f"{m}.aux.xml" for m in maps}


def test_geotiff_patch_nodata_goes_through_validation(bundle_dir: Path, tmp_path: Path, scene_factory) -> None:
    """A single GeoTIFF patch uses the file's nodata exactly like a scene does (mask or reject)."""
    tif = scene_factory(16, 16, nodata=7)
    with rasterio.open(tif, "r+") as dst:
        dst.write(np.full((1, 1), 7, np.uint16), 3, window=((2, 3), (5, 6)))  # one nodata pixel, band 3
    res = run("classify", bundle_dir, tif, "--json", "--backend", "onnxruntime")
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout)["results"]
    assert r["class"] is None and r["nodata"] is True
    assert run("classify", bundle_dir, tif).stdout.strip() == f"{tif.name}: nodata"
    res = CliRunner().invoke(main, ["classify", str(bundle_dir), str(tif), "--nodata-policy", "reject"])
    assert res.exit_code == 2 and "nodata (7)" in res.output and len(res.output.strip().splitlines()) == 1
    clean = scene_factory(16, 16, seed=3, nodata=65535)  # data never reaches it: nothing masked
    (r,) = json.loads(run("classify", bundle_dir, clean, "--json").stdout)["results"]
    assert r["class"].startswith("class_")


@pytest.mark.parametrize("args, fragment", [
    (["classify", "{bundle}", "{bad_npy}"], "12 bands, the model expects 13"),
    (["classify", "{missing}", "{bad_npy}"], "does not exist"),
    (["classify", "{bundle}", "{text_tif}"], "not a readable GeoTIFF"),
    (["profile", "{bundle}", "--batch", "1,x"], "comma-separated"),
    (["profile", "{bundle}", "--precision", "int8"], "no artifact"),
])
def test_one_line_errors(bundle_dir: Path, tmp_path: Path, args: list[str], fragment: str) -> None:
    np.save(tmp_path / "bad.npy", np.zeros((12, 16, 16), np.float32))
    (tmp_path / "text.tif").write_text("not a tiff")
    paths = {"bundle": bundle_dir, "bad_npy": tmp_path / "bad.npy", "missing": tmp_path / "nope",
             "text_tif": tmp_path / "text.tif"}
    res = CliRunner().invoke(main, [a.format(**paths) for a in args])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and fragment in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_profile_writes_report(bundle_dir: Path, tmp_path: Path) -> None:
    res = run("profile", bundle_dir, "--batch", "1,2", "--warmup", "1", "--iterations", "3",
              "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv")
    assert res.exit_code == 0, res.output
    reports = json.loads((tmp_path / "r.json").read_text())["reports"]
    assert [r["batch"] for r in reports] == [1, 2]
    assert reports[0]["command"].startswith("cmkd-edge")
    assert (tmp_path / "r.csv").read_text().count("\n") == 3


def test_runtime_never_imports_torch(bundle_dir: Path, tmp_path: Path, scene_factory) -> None:
    """classify + profile in a fresh interpreter, through the CLI entry point, on a packed bundle."""
    archive = pack_bundle(bundle_dir, tmp_path / "bundle.tar.gz")
    scene = scene_factory(40, 40)
    np.save(tmp_path / "p.npy", np.full((13, 16, 16), 1000, np.float32))
    code = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from cmkd_edge.cli import main
        r = CliRunner()
        for args in (["classify", {str(archive)!r}, {str(tmp_path / 'p.npy')!r}, "--json"],
                     ["classify", {str(archive)!r}, {str(scene)!r}, "--out", {str(tmp_path / 'm.tif')!r}],
                     ["profile", {str(archive)!r}, "--warmup", "1", "--iterations", "2", "--compare"]):
            res = r.invoke(main, args, catch_exceptions=False)
            assert res.exit_code == 0, res.output
        heavy = [m for m in ("torch", "onnx", "nncf", "tensorrt") if m in sys.modules]
        print("HEAVY", heavy)
    """)
    env = {"CMKD_EDGE_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout
