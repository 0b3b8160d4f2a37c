"""Checkpoints through the real CLI: garbage, pickle payloads (never executed), teacher/student
arch or view mismatches, and a resume that does not fit the run it continues."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .relhelp import TINY, assert_one_line_error, cli

pytest.importorskip("torch")


def _consumers(ckpt: Path, tmp_path: Path) -> list[list[object]]:
    """Every command that loads a checkpoint given by the user."""
    return [
        ["export", ckpt, "--out", tmp_path / "bundle"],
        ["evaluate", ckpt, "--data", TINY],
        ["distill", "--teacher", ckpt, "--data", TINY, "--student-view", "rgb", "--arch",
         "resnet-narrow", "--epochs", "1", "--quiet", "--out", tmp_path / "student"],
    ]


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint\n", b"PK\x03\x04broken zip"])
def test_not_a_checkpoint(tmp_path: Path, content: bytes) -> None:
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(content)
    for args in _consumers(ckpt, tmp_path):
        assert_one_line_error(cli(*args), "model.pt", "checkpoint")
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "student" / "last.pt").exists()


def test_foreign_torch_file(tmp_path: Path) -> None:
    import torch

    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "other.pt")
    for args in _consumers(tmp_path / "other.pt", tmp_path):
        assert_one_line_error(cli(*args), "other.pt", "not a cmkd-edge checkpoint")


@pytest.mark.parametrize("container", ["torch-zip", "raw-pickle"])
def test_pickle_payload_is_refused_and_never_runs(tmp_path: Path, container: str) -> None:
    """A checkpoint whose unpickling would run ``touch MARKER``: weights_only loading refuses it
    before any code runs, in every command, and the marker never appears."""
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    code = (
        "import os, pickle, sys, torch\n"
        "class P:\n"
        f"    def __reduce__(self): return (os.system, ('touch {marker}',))\n"
        "payload = {'format': 'cmkd-edge/checkpoint', 'version': 1, 'model': P()}\n"
        f"if sys.argv[1] == 'torch-zip': torch.save(payload, {str(evil)!r})\n"
        f"else: open({str(evil)!r}, 'wb').write(pickle.dumps(payload))\n"
    )
    subprocess.run([sys.executable, "-c", code, container], check=True, timeout=120)
    assert evil.stat().st_size > 0 and not marker.exists()
    for args in _consumers(evil, tmp_path):
        line = assert_one_line_error(cli(*args), "evil.pt")
        assert "not a safe cmkd-edge checkpoint" in line or "not a readable checkpoint" in line, line
        assert not marker.exists(), f"payload ran during {args[0]}"
    # the payload really is live: plain pickle would have run it (proves the test means something)
    if container == "raw-pickle":
        with open(evil, "rb") as fh:
            pickle.load(fh)  # noqa: S301 - deliberate, inside the test's temp dir
        assert marker.exists()


def test_teacher_view_does_not_fit_teacher(teacher_run: Path, tmp_path: Path) -> None:
    """An ms (13-band) teacher fed the rgb view: refused before training, naming both."""
    res = cli("distill", "--teacher", teacher_run / "best.pt", "--teacher-view", "rgb", "--data", TINY,
              "--student-view", "sar", "--arch", "resnet-narrow", "--epochs", "1", "--quiet",
              "--out", tmp_path / "s")
    assert_one_line_error(res, "view 'rgb'", "not compatible", "'ms'")
    assert not (tmp_path / "s" / "last.pt").exists()


def test_teacher_arch_does_not_fit_weights(teacher_run: Path, tmp_path: Path) -> None:
    """A teacher checkpoint whose recorded arch is not the one its weights belong to."""
    from cmkd_edge.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(teacher_run / "best.pt")
    meta = dataclasses.replace(ckpt.meta, model=dataclasses.replace(ckpt.meta.model, arch="mobilenetv2-tiny"))
    save_checkpoint(tmp_path / "liar.pt", dataclasses.replace(ckpt, meta=meta))
    for args in (["distill", "--teacher", tmp_path / "liar.pt", "--data", TINY, "--student-view", "rgb",
                  "--arch", "resnet-narrow", "--epochs", "1", "--quiet", "--out", tmp_path / "s"],
                 ["export", tmp_path / "liar.pt", "--out", tmp_path / "b"],
                 ["evaluate", tmp_path / "liar.pt", "--data", TINY]):
        assert_one_line_error(cli(*args), "mobilenetv2-tiny")
    assert not (tmp_path / "b").exists()


def test_resume_with_another_arch_or_view(teacher_run: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(teacher_run, tmp_path / "run"))
    before = (run / "last.pt").read_bytes()
    common = ["train-teacher", "--data", TINY, "--epochs", "2", "--quiet", "--resume", "--out", run]
    assert_one_line_error(cli(*common, "--view", "ms", "--arch", "mobilenetv2-tiny"),
                          "cannot resume", "arch")
    assert_one_line_error(cli(*common, "--view", "rgb", "--arch", "resnet-narrow", "--arch-opt", "width=4"),
                          "cannot resume", "view")
    assert (run / "last.pt").read_bytes() == before
    assert_one_line_error(cli("train-teacher", "--data", TINY, "--quiet", "--out", run),
                          "already holds a run", "--resume")
    assert_one_line_error(cli("train-teacher", "--data", TINY, "--quiet", "--resume", "--out",
                              tmp_path / "fresh"), "nothing to resume")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_random_bytes_never_escape_as_a_traceback(tmp_path: Path) -> None:
    """Arbitrary bytes (random, pickle opcodes, a torch zip cut short) give CheckpointError only."""
    import io

    import numpy as np
    import torch

    from cmkd_edge.checkpoint import load_checkpoint
    from cmkd_edge.errors import CheckpointError

    buf = io.BytesIO()
    torch.save({"format": "cmkd-edge/checkpoint", "w": torch.ones(64)}, buf)
    whole = buf.getvalue()
    rng = np.random.default_rng(0)
    samples = [whole[:n] for n in (1, 10, 100, len(whole) // 2, len(whole) - 1)]
    samples += [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (1, 7, 64, 4096)]
    samples += [b"\x80\x02" + bytes(rng.integers(0, 256, 50, dtype=np.uint8)), b"(((((", b"\x80\x05N."]
    for i, data in enumerate(samples):
        p = tmp_path / f"c{i}.pt"
        p.write_bytes(data)
        with pytest.raises(CheckpointError, match=f"c{i}.pt"):
            load_checkpoint(p)
