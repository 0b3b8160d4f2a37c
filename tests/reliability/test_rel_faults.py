"""Faults: SIGKILL mid-training then --resume, SIGKILL mid-export / mid-quantize, a full disk.

Killed processes are real ``cmkd-edge`` subprocesses (``start_new_session`` so the kill reaches
only them). A full disk is a small tmpfs (root only; skipped with the reason elsewhere).
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from .relhelp import (
    TINY,
    assert_one_line_error,
    cli,
    fill_disk,
    popen_cmkd,
    run_cmkd,
    tree_digest,
    wait_for,
)

pytest.importorskip("torch")

#: same thread count in every training process, so the runs are bit-for-bit comparable
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TRAIN = ["train-teacher", "--data", "synthetic:per_class=24,size=16", "--view", "ms", "--arch",
         "resnet-narrow", "--arch-opt", "width=4", "--epochs", "6", "--batch-size", "8", "--seed", "3",
         "--quiet", "--json"]


def _epochs_done(run: Path) -> int:
    try:
        return max(0, len((run / "metrics.csv").read_text().strip().splitlines()) - 1)
    except OSError:
        return 0


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(fh)]


def test_sigkill_mid_training_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    killed, ref = tmp_path / "killed", tmp_path / "reference"
    reference = popen_cmkd(*TRAIN, "--out", ref, env=ONE_THREAD)  # runs beside the victim
    victim = popen_cmkd(*TRAIN, "--out", killed, env=ONE_THREAD)
    try:
        # last.pt exists after epoch 1; wait for epoch 2 to be written, then kill inside epoch 3
        assert wait_for(lambda: _epochs_done(killed) >= 2, 180, victim), victim.communicate()[1][-2000:]
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done = _epochs_done(killed)
    assert 2 <= done < 6 and (killed / "last.pt").is_file() and not (killed / "summary.json").exists()
    from cmkd_edge.checkpoint import load_checkpoint

    last = load_checkpoint(killed / "last.pt")  # ... but last.pt itself is complete (atomic write)
    assert last.meta.epoch == done

    resumed = run_cmkd(*TRAIN, "--resume", "--out", killed, env=ONE_THREAD, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    out, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-2000:]
    a, b = json.loads(resumed.stdout), json.loads(out)
    assert a["epochs_run"] == b["epochs_run"] == 6
    assert a["test"] == b["test"] and a["best_val"] == b["best_val"] and a["best_epoch"] == b["best_epoch"]
    assert _metrics(killed) == _metrics(ref)  # every epoch's losses and scores, identical
    assert json.loads((killed / "summary.json").read_text())["test"] == b["test"]


def _kill_when(proc, predicate, what: str, timeout: float = 180) -> None:
    try:
        ok = wait_for(predicate, timeout, proc, poll=0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if not ok or proc.returncode != -signal.SIGKILL:
        pytest.fail(f"{what} was not killed midway (rc={proc.returncode}): {proc.stderr.read()[-1500:]}")


def test_export_killed_midway_keeps_previous_bundle(exported_bundle: Path, student_run: Path,
                                                    tmp_path: Path) -> None:
    target = Path(shutil.copytree(exported_bundle, tmp_path / "bundle"))
    before = tree_digest(target)
    proc = popen_cmkd("export", student_run / "best.pt", "--out", target, "--samples", "8", "--force")
    # kill once the new model is being written in the staging directory beside the target
    _kill_when(proc, lambda: any(tmp_path.glob(".bundle.staging-*/model.onnx")), "export")
    assert tree_digest(target) == before
    res = run_cmkd("bundle", target, "--verify")
    assert res.returncode == 0 and res.stdout.startswith("ok:"), res.stderr


def test_quantize_killed_midway_keeps_previous_bundle(exported_bundle: Path, tmp_path: Path) -> None:
    target = Path(shutil.copytree(exported_bundle, tmp_path / "bundle"))
    before = tree_digest(target)
    proc = popen_cmkd("quantize", target, "--calib-data", TINY, "--calib-size", "16")
    # kill while candidates are built: the staging copy of the bundle exists beside the target
    _kill_when(proc, lambda: any(tmp_path.glob(".bundle.staging-*/model.onnx")), "quantize")
    assert tree_digest(target) == before
    res = run_cmkd("bundle", target, "--verify")
    assert res.returncode == 0 and res.stdout.startswith("ok:"), res.stderr
    # and a rerun after the crash succeeds despite the stray staging directory
    again = cli("quantize", target, "--calib-data", TINY, "--calib-size", "16", "--json")
    assert again.exit_code == 0, again.stderr[-1500:]
    assert cli("bundle", target, "--verify").exit_code == 0


# -- full disk ---------------------------------------------------------------------------------------
def test_full_disk_atomic_write_keeps_old_file(small_fs: Path) -> None:
    from cmkd_edge.fsutil import atomic_write_bytes

    target = small_fs / "manifest.json"
    atomic_write_bytes(target, b"old")
    fill_disk(small_fs)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(target, b"x" * (1 << 20))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in small_fs.iterdir()) == [".filler", "manifest.json"]


def test_full_disk_pack(factory_bundle: Path, small_fs: Path) -> None:
    out = small_fs / "bundle.tar.gz"
    out.write_bytes(b"previous archive")
    fill_disk(small_fs)
    line = assert_one_line_error(cli("bundle", factory_bundle, "--pack", out), "No space left on device",
                                 "bundle.tar.gz", code=1)
    assert "free some space" in line
    assert out.read_bytes() == b"previous archive"
    assert sorted(p.name for p in small_fs.iterdir()) == [".filler", "bundle.tar.gz"]


def test_full_disk_scene_class_map(factory_bundle: Path, small_fs: Path, tmp_path: Path) -> None:
    """GDAL only prints its write errors; the class map is read back before it replaces --out."""
    from bundle_factory import write_scene

    scene = write_scene(tmp_path / "scene.tif", 256, 256)
    out = small_fs / "map.tif"
    out.write_bytes(b"previous class map")
    fill_disk(small_fs)
    assert_one_line_error(cli("classify", factory_bundle, scene, "--out", out, "--no-progress"),
                          "writing", "map.tif", "could not be written completely")
    assert out.read_bytes() == b"previous class map"
    assert sorted(p.name for p in small_fs.iterdir()) == [".filler", "map.tif"]


def test_full_disk_quantize_keeps_bundle(exported_bundle: Path, small_fs: Path) -> None:
    bundle = Path(shutil.copytree(exported_bundle, small_fs / "bundle"))
    before = tree_digest(bundle)
    fill_disk(small_fs, leave=64 << 10)  # room for a little, not for a staged copy of the model
    res = cli("quantize", bundle, "--calib-data", TINY, "--calib-size", "8")
    assert_one_line_error(res, "No space left on device", code=1, progress=True)
    assert tree_digest(bundle) == before
    assert sorted(p.name for p in small_fs.iterdir()) == [".filler", "bundle"]
    os.unlink(small_fs / ".filler")
    assert cli("bundle", bundle, "--verify").exit_code == 0


def test_full_disk_training_keeps_last_checkpoint(teacher_run: Path, small_fs: Path) -> None:
    run = Path(shutil.copytree(teacher_run, small_fs / "run"))
    last = (run / "last.pt").read_bytes()
    fill_disk(small_fs)
    res = cli("train-teacher", "--data", TINY, "--view", "ms", "--arch", "resnet-narrow", "--arch-opt",
              "width=4", "--epochs", "2", "--batch-size", "8", "--quiet", "--resume", "--out", run)
    assert_one_line_error(res, "No space left on device", code=1)
    assert (run / "last.pt").read_bytes() == last
    from cmkd_edge.checkpoint import load_checkpoint

    assert load_checkpoint(run / "last.pt").meta.epoch == 1
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
