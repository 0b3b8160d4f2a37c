"""FitNet hint loss (Romero et al., ICLR 2015, arXiv 1412.6550) on top of logit KD.

L = ce_weight * CE(z_s, y) + kd_weight * KL_T(p_t || p_s) + hint_weight * MSE(r(F_s), F_t)

where F_s, F_t are the student's and teacher's ``feature`` maps (default "map", the output of the
second-to-last stage) and r is a learned 1x1 convolution from the student's channels to the
teacher's. The paper trains the hint in a separate first stage; here (as in most public code, e.g.
torchdistill's single-stage configs) hint and KD are optimised jointly, and ``kd_weight=0`` gives a
pure hint + CE run. Cross-modal maps rarely share a spatial size (different archs or strides), so
both are average-pooled to the smaller common size before the MSE.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn import functional as F

from cmkd_edge.distill.losses.base import DistillContext, LossOutput, ModelOutput
from cmkd_edge.distill.losses.kd import KDConfig, LogitKD
from cmkd_edge.errors import ConfigError

FEATURES = ("map", "last")


@dataclass(frozen=True)
class FitNetConfig(KDConfig):
    """Logit-KD options plus the hint's weight and which feature tap it reads."""

    hint_weight: float = 1.0
    feature: str = "map"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.feature not in FEATURES:
            raise ValueError(f"feature must be one of {', '.join(FEATURES)} (got {self.feature!r})")
        if self.hint_weight < 0:
            raise ValueError(f"hint_weight must be >= 0 (got {self.hint_weight})")


def hint_loss(student_map: Tensor, teacher_map: Tensor) -> Tensor:
    """MSE between (N, C, h, w) maps after adaptive average pooling to the smaller size of each axis."""
    h = min(student_map.shape[-2], teacher_map.shape[-2])
    w = min(student_map.shape[-1], teacher_map.shape[-1])
    if student_map.shape[-2:] != (h, w):
        student_map = F.adaptive_avg_pool2d(student_map, (h, w))
    if teacher_map.shape[-2:] != (h, w):
        teacher_map = F.adaptive_avg_pool2d(teacher_map, (h, w))
    return F.mse_loss(student_map, teacher_map.detach())


class FitNet(LogitKD):
    """Logit KD plus a FitNet hint through a learned 1x1-conv regressor (built in ``setup``)."""

    name = "fitnet"
    Config = FitNetConfig

    def __init__(self, cfg: FitNetConfig | None = None, task: str = "multiclass") -> None:
        super().__init__(cfg, task)
        self.regressor: nn.Module | None = None

    def setup(self, ctx: DistillContext) -> None:
        """Build the regressor from the two networks' channel counts (before the optimizer exists)."""
        if ctx.teacher is None:
            raise ConfigError("method 'fitnet' needs a teacher checkpoint (--teacher)")
        key = self.cfg.feature
        cs, ct = ctx.student.feature_dims[key], ctx.teacher.feature_dims[key]
        self.regressor = nn.Conv2d(cs, ct, kernel_size=1, bias=False)
        nn.init.kaiming_normal_(self.regressor.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, s: ModelOutput, t: ModelOutput | None, targets: Tensor) -> LossOutput:
        if self.regressor is None or t is None:
            raise RuntimeError("FitNet.setup() must run before the loss (the trainer calls it)")
        ce = self.task_loss(s.logits, targets)
        kd = self.kd_term(s, t)
        key = self.cfg.feature
        hint = hint_loss(self.regressor(s.feats[key]), t.feats[key])
        c = self.cfg
        total = c.ce_weight * ce + c.kd_weight * kd + c.hint_weight * hint
        return LossOutput(total, {"ce": ce.detach(), "kd": kd.detach(), "hint": hint.detach()})
