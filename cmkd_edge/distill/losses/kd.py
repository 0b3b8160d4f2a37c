"""Logit knowledge distillation (Hinton et al. 2015) in the two conventions methods.md section 1 names.

``batchmean``: KL summed over classes, averaged over samples, optionally times T^2 (Hinton's
gradient-scale correction). ``mean``: averaged over samples *and* classes (= batchmean / C) with no
T^2 - the MFH authors' code, needed to reproduce their synthetic numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from cmkd_edge.distill.losses.base import BaseConfig, DistillMethod, LossOutput, ModelOutput


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 4.0,
    reduction: Literal["batchmean", "mean"] = "batchmean",
    t2: bool = True,
    multilabel: bool = False,
) -> Tensor:
    """KL(p_t || p_s) at temperature T; for multi-label, the per-class Bernoulli KL.

    Args:
        student_logits: (N, C) student logits (gradients flow here).
        teacher_logits: (N, C) teacher logits (detached by the caller or here).
        temperature: T > 0 softens both distributions.
        reduction: "batchmean" (sum over classes, mean over samples) or "mean" (mean over both).
        t2: multiply by T^2 (only with "batchmean"; the "mean" convention never scales).
        multilabel: use sigmoid probabilities and a Bernoulli KL per class.
    """
    t = float(temperature)
    teacher_logits = teacher_logits.detach()
    if multilabel:
        ps_log = F.logsigmoid(student_logits / t)
        ps_log_neg = F.logsigmoid(-student_logits / t)
        pt = torch.sigmoid(teacher_logits / t)
        pt_log, pt_log_neg = F.logsigmoid(teacher_logits / t), F.logsigmoid(-teacher_logits / t)
        elem = pt * (pt_log - ps_log) + (1 - pt) * (pt_log_neg - ps_log_neg)
    else:
        log_ps = F.log_softmax(student_logits / t, dim=1)
        log_pt = F.log_softmax(teacher_logits / t, dim=1)
        elem = log_pt.exp() * (log_pt - log_ps)
    if reduction == "mean":
        return elem.mean()
    if reduction != "batchmean":
        raise ValueError(f"unknown KD reduction {reduction!r}")
    loss = elem.sum() / student_logits.shape[0]
    return loss * t * t if t2 else loss


@dataclass(frozen=True)
class KDConfig(BaseConfig):
    """Logit KD: L = ce_weight * CE + kd_weight * KL at ``temperature``."""

    reduction: Literal["batchmean", "mean"] = "batchmean"
    t2: bool = True


class LogitKD(DistillMethod):
    """Logit KD (Hinton et al. 2015): CE plus KL between softened teacher and student outputs."""

    name = "kd"
    Config = KDConfig

    def kd_term(self, s: ModelOutput, t: ModelOutput) -> Tensor:
        """The KL term alone, so methods built on KD reuse it unchanged."""
        c = self.cfg
        return kd_loss(
            s.logits, t.logits, c.temperature, c.reduction, c.t2, multilabel=self.task == "multilabel"
        )

    def forward(self, s: ModelOutput, t: ModelOutput | None, targets: Tensor) -> LossOutput:
        ce = self.task_loss(s.logits, targets)
        kd = self.kd_term(s, t)
        total = self.cfg.ce_weight * ce + self.cfg.kd_weight * kd
        return LossOutput(total, {"ce": ce.detach(), "kd": kd.detach()})
