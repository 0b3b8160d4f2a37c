"""Tiny models and a tiny paired dataset for the method tests (CPU, one thread, seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


class PairedSet:
    """``ds[i] -> ({"ms": (4, 16, 16), "rgb": (3, 16, 16)}, label)``; 3 classes, class-coloured."""

    def __init__(self, n: int = 24, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 3
        base = self.labels.float()[:, None, None, None]
        self.ms = base + 0.5 * torch.randn(n, 4, 16, 16, generator=g)
        self.rgb = self.ms[:, :3] + 0.5 * torch.randn(n, 3, 16, 16, generator=g)
        self.augment = True

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return {"ms": self.ms[i], "rgb": self.rgb[i]}, self.labels[i]


@pytest.fixture
def paired() -> PairedSet:
    return PairedSet()


@pytest.fixture
def models():
    from cmkd_edge.models import build_model

    torch.manual_seed(0)
    teacher = build_model("resnet-narrow", 4, 3).eval()
    student = build_model("mobilenetv2-tiny", 3, 3)
    return teacher, student


@pytest.fixture
def ctx(models, paired, tmp_path: Path):
    from cmkd_edge.distill.losses.base import DistillContext

    teacher, student = models
    return DistillContext(
        teacher=teacher,
        student=student,
        train_set=paired,
        device=torch.device("cpu"),
        teacher_view="ms",
        student_view="rgb",
        run_dir=tmp_path,
        make_loader=None,
        task="multiclass",
        num_classes=3,
        seed=0,
        log=lambda m: None,
    )
