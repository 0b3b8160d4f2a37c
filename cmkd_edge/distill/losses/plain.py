"""Method ``none``: labels only, no teacher - teacher training and the no-KD student baseline."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.nn import functional as F

from cmkd_edge.distill.losses.base import DistillMethod, LossOutput, ModelOutput, labelled_rows


@dataclass(frozen=True)
class NoDistillConfig:
    """Cross-entropy only. ``label_smoothing`` (multiclass only) regularises a teacher on tiny data."""

    ce_weight: float = 1.0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1) (got {self.label_smoothing})")


class NoDistill(DistillMethod):
    """L = ce_weight * CE(z_s, y) (BCE with logits for multi-label); the teacher is never run."""

    name = "none"
    needs_teacher = False
    Config = NoDistillConfig

    def task_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.task == "multilabel" or not self.cfg.label_smoothing:
            return super().task_loss(logits, targets)
        keep = labelled_rows(targets)
        if not bool(keep.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[keep], targets[keep], label_smoothing=self.cfg.label_smoothing)

    def forward(self, s: ModelOutput, t: ModelOutput | None, targets: Tensor) -> LossOutput:
        ce = self.task_loss(s.logits, targets)
        return LossOutput(self.cfg.ce_weight * ce, {"ce": ce.detach()})
