"""Archives of scenes: input expansion, resumable runs, failures reported, a real Dask LocalCluster.

No mocked scheduler: the cluster test starts ``distributed.LocalCluster`` with two worker processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio
from click.testing import CliRunner
from cmkd_edge.runtime.archive import SceneSettings, expand_inputs, run_archive

from cmkd_edge.errors import DataError

sys.path.insert(0, str(Path(__file__).parent))
from bundle_factory import S2_BANDS, write_scene  # noqa: E402

CLI = [sys.executable, "-c", "from cmkd_edge.cli import main; main()"]


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def scenes(tmp_path: Path) -> Path:
    d = tmp_path / "scenes"
    d.mkdir()
    for i in range(4):
        write_scene(d / f"scene_{i}.tif", 40 + 8 * i, 48, seed=i)
    return d


def test_expand_inputs(scenes: Path, tmp_path: Path) -> None:
    (scenes / "notes.txt").write_text("not a scene")
    (scenes / "summary.json").write_text('{"run_key": "x", "records": []}')  # JSON, but no STAC item
    got = expand_inputs([scenes, Path(str(scenes / "scene_[12].tif")), scenes / "scene_0.tif"], S2_BANDS)
    assert [p.name for p in got] == [f"scene_{i}.tif" for i in range(4)]  # deduplicated, order kept
    with pytest.raises(DataError, match="matches no file"):
        expand_inputs([tmp_path / "*.jp2"], S2_BANDS)
    with pytest.raises(DataError, match="does not exist"):
        expand_inputs([tmp_path / "nope.tif"], S2_BANDS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no scene"):
        expand_inputs([tmp_path / "empty"], S2_BANDS)


def test_in_process_archive_is_resumable_and_keyed_by_settings(bundle_dir: Path, scenes: Path, tmp_path: Path) -> None:
    out = tmp_path / "maps"
    settings = SceneSettings(stride=8, backend="onnxruntime")
    first = run_archive(bundle_dir, [scenes], out, settings)
    assert [r["status"] for r in first.records] == ["done"] * 4
    rec = json.loads((out / "scene_2.scene.json").read_text())
    assert rec["run_key"] == first.run_key and sum(rec["histogram"].values()) == 56 * 48
    assert rec["backend"] == "onnxruntime" and rec["seconds"] > 0
    with rasterio.open(out / "scene_2_classes.tif") as o:
        assert o.shape == (56, 48)
    csv_lines = first.summary_csv.read_text().splitlines()
    assert csv_lines[0].startswith("scene,status,seconds,backend") and "px_class_0" in csv_lines[0]
    assert len(csv_lines) == 5
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*_classes.tif")}
    again = run_archive(bundle_dir, [scenes], out, settings)
    assert [r["status"] for r in again.records] == ["skipped"] * 4
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("*_classes.tif")}  # nothing rewritten
    other = run_archive(bundle_dir, [scenes], out, SceneSettings(stride=16, backend="onnxruntime"))
    assert [r["status"] for r in other.records] == ["done"] * 4 and other.run_key != first.run_key


def test_in_process_archive_never_imports_dask(bundle_dir: Path, scenes: Path, tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from cmkd_edge.runtime.archive import SceneSettings, run_archive; "
            f"r = run_archive(Path({str(bundle_dir)!r}), [Path({str(scenes)!r})], Path({str(tmp_path / 'o')!r}), "
            "SceneSettings(backend='onnxruntime')); "
            "print(r.count('done'), [m for m in ('dask', 'distributed', 'torch') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[0] == "4 []"


def test_local_cluster_matches_one_process_and_reports_failures(bundle_dir: Path, scenes: Path,
                                                                tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from cmkd_edge.cli import main

    (scenes / "scene_9.tif").write_bytes(b"II*\x00 truncated, not a GeoTIFF")
    local = run_archive(bundle_dir, [scenes / f"scene_{i}.tif" for i in range(4)], tmp_path / "local",
                        SceneSettings(stride=8, backend="onnxruntime"))
    assert local.count("done") == 4 and {r["worker_pid"] for r in local.records} == {os.getpid()}
    res = CliRunner().invoke(main, ["classify", str(bundle_dir), str(scenes), "--out-dir", str(tmp_path / "dask"),
                                    "--workers", "2", "--stride", "8", "--backend", "onnxruntime", "--json"])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines()[-1].startswith("error: 1 of 5 scenes failed (scene_9)")
    doc = json.loads(res.stdout)
    by = {r["scene"]: r for r in doc["records"]}
    assert by["scene_9"]["status"] == "failed" and "scene_9" in by["scene_9"]["error"]
    assert {s: by[s]["status"] for s in by if s != "scene_9"} == {f"scene_{i}": "done" for i in range(4)}
    assert all(by[f"scene_{i}"]["bundle_opens"] == 1 for i in range(4))  # each worker verified it once
    assert len({by[f"scene_{i}"]["worker_pid"] for i in range(4)} - {os.getpid()}) >= 1
    for i in range(4):  # the cluster maps are byte-identical to the single-process ones
        a, b = tmp_path / "local" / f"scene_{i}_classes.tif", tmp_path / "dask" / f"scene_{i}_classes.tif"
        assert _digest(a) == _digest(b), i
    summary = json.loads((tmp_path / "dask" / "summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (4, 1)
    assert not (tmp_path / "dask" / "scene_9_classes.tif").exists()


def test_cluster_options_are_checked(bundle_dir: Path, scenes: Path, tmp_path: Path) -> None:
    from cmkd_edge.cli import main

    for args, msg in ((["--workers", "2"], "need --out-dir"),
                      (["--out-dir", str(tmp_path / "d"), "--workers", "2", "--scheduler", "tcp://x:1"],
                       "--workers and --scheduler both given"),
                      (["--out-dir", str(tmp_path / "d"), "--out", str(tmp_path / "o.tif")], "--out and --out-dir")):
        res = CliRunner().invoke(main, ["classify", str(bundle_dir), str(scenes), *args])
        assert res.exit_code == 2 and res.stderr.startswith("error: ") and msg in res.stderr, res.output
        assert "Traceback" not in res.output


def test_killed_archive_run_resumes_without_redoing_or_leaving_partials(bundle_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "big"
    d.mkdir()
    for i in range(4):
        write_scene(d / f"s{i}.tif", 256, 256, seed=i)
    out = tmp_path / "maps"
    args = [*CLI, "classify", str(bundle_dir), str(d), "--out-dir", str(out), "--stride", "12", "--probabilities",
            "--backend", "onnxruntime", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.scene.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.name: p.read_bytes() for p in out.glob("*.scene.json")}
    assert 1 <= len(done_before) < 4, "the run must be killed part-way"
    res = subprocess.run(args + ["--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    status = {r["scene"]: r["status"] for r in json.loads(res.stdout)["records"]}
    assert {s for s, v in status.items() if v == "skipped"} == {n.removesuffix(".scene.json") for n in done_before}
    assert sorted(status.values()).count("done") == 4 - len(done_before)
    for name, blob in done_before.items():  # finished scenes were not redone
        assert (out / name).read_bytes() == blob
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no partial file left
    for i in range(4):
        with rasterio.open(out / f"s{i}_classes.tif") as o:
            assert o.shape == (256, 256) and (o.read(1) < 4).all()


def test_existing_scheduler_by_address(bundle_dir: Path, scenes: Path, tmp_path: Path) -> None:
    """--scheduler: a cluster someone else started (here an in-process one, to stay fast) runs the scenes."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc:
        run = run_archive(bundle_dir, [scenes / "scene_0.tif", scenes / "scene_1.tif"], tmp_path / "m",
                          SceneSettings(backend="onnxruntime"), scheduler=lc.scheduler_address)
    assert [r["status"] for r in run.records] == ["done", "done"]
    assert (tmp_path / "m" / "scene_1_classes.tif").exists()


def test_without_the_extras_each_option_names_its_extra(bundle_dir: Path, scenes: Path, tmp_path: Path) -> None:
    """On an install without [stac] / [cluster]: one line naming the extra, exit 2 (a device never needs them)."""
    item = tmp_path / "item.json"
    item.write_text('{"type": "Feature", "id": "x", "assets": {}}')
    cases = {"stac": ["classify", str(bundle_dir), str(item), "--out", str(tmp_path / "o.tif")],
             "cluster": ["classify", str(bundle_dir), str(scenes), "--out-dir", str(tmp_path / "d"), "--workers", "2"]}
    code = ("import json, sys\n"
            "for m in ('pystac', 'dask', 'distributed'): sys.modules[m] = None\n"
            "from click.testing import CliRunner\nfrom cmkd_edge.cli import main\n"
            f"cases = {cases!r}\n"
            "print(json.dumps({k: [CliRunner().invoke(main, a).exit_code, CliRunner().invoke(main, a).stderr]"
            " for k, a in cases.items()}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for key, extra in (("stac", "[stac]"), ("cluster", "[cluster]")):
        code_, err = got[key]
        assert code_ == 2 and err.startswith("error: ") and extra in err and len(err.strip().splitlines()) == 1, got
