"""Fixtures of the trainer tests: a tiny synthetic set and one small trained teacher per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

torch.set_num_threads(1)

#: 6 classes x 6 samples of 16 px: every run below takes about a second.
TINY = "synthetic:per_class=6,size=16"


def tiny_config(out: Path, **kw: Any):
    """A fast TrainConfig on the tiny synthetic set (overridable)."""
    from cmkd_edge.distill.config import TrainConfig

    base: dict[str, Any] = dict(data=TINY, view="ms", arch="resnet-narrow", epochs=2, batch_size=8,
                                quiet=True, device="cpu", lr=3e-3)
    base.update(kw)
    return TrainConfig(out=out, **base)


@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory of a 2-epoch ms teacher on the tiny set."""
    from cmkd_edge.distill.trainer import train

    out = tmp_path_factory.mktemp("teacher")
    train(tiny_config(out))
    return out
