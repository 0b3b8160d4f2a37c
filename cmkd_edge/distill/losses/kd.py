"""Logit knowledge distillation (Hinton et al. 2015) in the two conventions methods.md section 1 names.

``batchmean``: KL summed over classes, averaged over samples, optionally times T^2 (Hinton's
gradient-scale correction). ``mean``: averaged over samples *and* classes (= batchmean / C) with no
T^2 - the MFH authors' code, needed to reproduce their synthetic numbers.

Consistent and patient teaching (Beyer et al., CVPR 2022, arXiv 2106.05237; docs/methods.md s.5),
options of every method of the KD family: the teacher is run live on the same augmented input (the
trainer and the dataset's shared augmentation draw already do this), ``mixup`` mixes each step's
inputs with one Beta(alpha, alpha) draw and one permutation applied alike to the student's and the
teacher's inputs, and long schedules are the user's ``--epochs``. ``auto_temperature`` picks T on the
validation split (temperature scaling of the teacher, Guo et al. 2017), so a near-certain teacher
does not hand out one-hot targets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from cmkd_edge.distill.losses.base import BaseConfig, DistillContext, DistillMethod, LossOutput, ModelOutput
from cmkd_edge.errors import ConfigError

#: Temperatures ``auto_temperature`` tries (log-spaced, 1 to 20: never sharper than the teacher itself).
TEMPERATURE_GRID = tuple(float(t) for t in np.exp(np.linspace(0.0, np.log(20.0), 61)))


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
    """Logit KD: L = ce_weight * CE + kd_weight * KL at ``temperature``.

    Attributes:
        mixup: alpha of the Beta(alpha, alpha) mixing weight (0 = off): one draw and one permutation
            per step, applied alike to the student's and the teacher's input; the label loss is
            lam CE(y) + (1 - lam) CE(y[perm]), each over its labelled rows.
        auto_temperature: replace ``temperature`` by the T minimising the teacher's negative
            log-likelihood on the validation split (its own view), from :data:`TEMPERATURE_GRID`.
    """

    reduction: Literal["batchmean", "mean"] = "batchmean"
    t2: bool = True
    mixup: float = 0.0
    auto_temperature: bool = False

    def __post_init__(self) -> None:
        if self.mixup < 0:
            raise ValueError(f"mixup must be >= 0 (got {self.mixup})")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (got {self.temperature})")


def calibrated_temperature(logits: Tensor, targets: Tensor, multilabel: bool = False) -> float:
    """The T of :data:`TEMPERATURE_GRID` that minimises the NLL of ``logits / T`` on labelled targets."""
    logits = logits.float()
    best, best_t = float("inf"), 1.0
    for t in TEMPERATURE_GRID:
        if multilabel:
            nll = float(F.binary_cross_entropy_with_logits(logits / t, targets.float()))
        else:
            nll = float(F.cross_entropy(logits / t, targets))
        if nll < best:
            best, best_t = nll, t
    return best_t


class LogitKD(DistillMethod):
    """Logit KD (Hinton et al. 2015): CE plus KL between softened teacher and student outputs."""

    name = "kd"
    Config = KDConfig

    def __init__(self, cfg: Any | None = None, task: str = "multiclass") -> None:
        super().__init__(cfg, task)
        self._mix: tuple[float, Tensor] | None = None
        self.temperature_record: dict[str, Any] | None = None

    def setup(self, ctx: DistillContext) -> None:
        """Choose the temperature on the validation split when ``auto_temperature`` asks for it."""
        if not getattr(self.cfg, "auto_temperature", False) or ctx.teacher is None:
            return
        from cmkd_edge.distill.dataset_tensors import batched_forward, collect_views

        val = ctx.val_set
        if val is None or ctx.teacher_view not in getattr(val, "views", {}):
            raise ConfigError("auto_temperature needs the teacher's view of the validation split",
                              "set --temperature instead")
        xs, y = collect_views(val, [ctx.teacher_view])
        ctx.teacher.eval()
        logits = batched_forward(lambda x: ctx.teacher.forward_all(x)[0], xs[ctx.teacher_view], ctx.device)
        t = calibrated_temperature(logits, y, self.task == "multilabel")
        self.temperature_record = {"chosen": round(t, 4), "on": f"val (n={len(y)})", "was": self.cfg.temperature,
                                   "rule": "min NLL of the teacher's softened predictions (temperature scaling)"}
        ctx.log(f"kd: temperature {t:.2f} chosen on the validation split (n={len(y)}, teacher NLL)")
        self.cfg = dataclasses.replace(self.cfg, temperature=t)

    def prepare_inputs(self, student_x: Tensor, teacher_x: Tensor | None, targets: Tensor
                       ) -> tuple[Tensor, Tensor | None]:
        """Mixup, one draw for both models (Beyer et al. 2022: the teacher sees what the student sees)."""
        self._mix = None
        alpha = getattr(self.cfg, "mixup", 0.0)
        if alpha <= 0 or not self.training or student_x.shape[0] < 2:
            return student_x, teacher_x
        lam = float(np.random.beta(alpha, alpha))
        perm = torch.randperm(student_x.shape[0], device=student_x.device)
        self._mix = (lam, perm)
        mixed_t = None if teacher_x is None else lam * teacher_x + (1 - lam) * teacher_x[perm]
        return lam * student_x + (1 - lam) * student_x[perm], mixed_t

    def task_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self._mix is None:
            return super().task_loss(logits, targets)
        lam, perm = self._mix
        return lam * super().task_loss(logits, targets) + (1 - lam) * super().task_loss(logits, targets[perm])

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
