"""Reliability fixtures: tiny trained runs, exported and hand-built bundles, a fillable tmpfs.

Helpers (the CLI in-process and as a subprocess, the one-line error check) live in relhelp.py.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .relhelp import TINY, cli_ok


# -- trained runs and bundles (real training, real export; shared read-only: copy before changing) --
@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch resnet-narrow teacher on the ms view of the tiny synthetic set."""
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("rel-runs") / "teacher"
    cli_ok("train-teacher", "--data", TINY, "--view", "ms", "--arch", "resnet-narrow", "--arch-opt",
           "width=4", "--epochs", "1", "--batch-size", "8", "--quiet", "--out", out)
    return out


@pytest.fixture(scope="session")
def student_run(tmp_path_factory: pytest.TempPathFactory, teacher_run: Path) -> Path:
    """A 1-epoch student distilled (kd) from ``teacher_run`` on the rgb view."""
    out = tmp_path_factory.mktemp("rel-runs") / "student"
    cli_ok("distill", "--teacher", teacher_run / "best.pt", "--data", TINY, "--student-view", "rgb",
           "--arch", "resnet-narrow", "--arch-opt", "width=4", "--method", "kd", "--epochs", "1",
           "--batch-size", "8", "--quiet", "--out", out)
    return out


@pytest.fixture(scope="session")
def exported_bundle(tmp_path_factory: pytest.TempPathFactory, student_run: Path) -> Path:
    """``cmkd-edge export`` of ``student_run`` (ONNX fp32 + manifest). Read-only: copy first."""
    out = tmp_path_factory.mktemp("rel-bundles") / "student-bundle"
    cli_ok("export", student_run / "best.pt", "--out", out, "--samples", "8")
    return out


@pytest.fixture(scope="session")
def factory_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real bundle (ONNX fp32, 13 bands, 16x16, 4 classes) built without torch."""
    from bundle_factory import make_bundle

    return make_bundle(tmp_path_factory.mktemp("rel-bundles") / "factory", openvino=False)


@pytest.fixture
def bundle_copy(factory_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(factory_bundle, tmp_path / "bundle"))


# -- a small filesystem that can be filled up -------------------------------------------------------
@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted at a temporary directory (needs root / CAP_SYS_ADMIN; else skip)."""
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot create a small filesystem to fill")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (not root / no CAP_SYS_ADMIN): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)
