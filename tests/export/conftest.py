"""Real (tiny) student checkpoints written with the project's own save_checkpoint, and bundles."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.export.export_helpers import make_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def optical_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "student.pt")


@pytest.fixture(scope="session")
def sar_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "sar.pt", sar=True)


@pytest.fixture(scope="session")
def optical_bundle(tmp_path_factory, optical_ckpt) -> Path:
    """One exported bundle shared by read-only tests (tests that change it copy it first)."""
    from cmkd_edge.export.student import export_checkpoint

    return export_checkpoint(optical_ckpt, tmp_path_factory.mktemp("b") / "bundle", samples=8,
                             batch=4, hw=(32, 32), data="/nonexistent")
