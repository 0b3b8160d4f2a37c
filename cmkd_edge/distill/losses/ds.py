"""Dimensional-structure CMKD (Si, Dong, Qiang et al., arXiv 2306.15977), reconstructed per methods.md s.3.

Premise: the easy modality's features have a better dimensional structure - less correlated output
channels, more uniformly spread intermediate features - and imposing it on the hard-modality
student helps. The paper ships no code; the loss follows methods.md and every open choice is an
option of :class:`DSConfig`:

- channel independence on the penultimate features Z (B, D) (``feats["embed"]``): standardise each
  channel over the batch, R = Z^T Z / B,
  ``independent``: L_ind = mean_{i != j} R_ij^2;  ``match``: L_ind = ||R_s - R_t||_F^2 against the
  teacher's R on the paired batch (needs equal D);
- uniformity of an intermediate map H (B, C, h, w) (``feats["map"]``), Wang & Isola's
  L_uni = log mean_{i != j} exp(-t ||u_i - u_j||^2), t = 2, u L2-normalised per sample after global
  average pooling (``pooled``) or flattening (``flatten``); ``spatial``: the same over the h*w
  position vectors inside each sample, averaged over samples;
- L = ce_weight CE + kd_weight KD + ind_weight L_ind + uni_weight L_uni (kd_weight 0 = no teacher
  logits used; KD is :func:`cmkd_edge.distill.losses.kd.kd_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from cmkd_edge.distill.losses.base import DistillContext, LossOutput, ModelOutput
from cmkd_edge.distill.losses.kd import KDConfig, LogitKD
from cmkd_edge.errors import ConfigError


def channel_correlation(z: Tensor, eps: float = 1e-5) -> Tensor:
    """R = Z^T Z / B of batch-standardised features. z: (B, D) -> (D, D)."""
    z = z.float()
    z = (z - z.mean(0, keepdim=True)) / (z.std(0, unbiased=False, keepdim=True) + eps)
    return z.T @ z / z.shape[0]


def independence_loss(z: Tensor) -> Tensor:
    """L_ind = mean over i != j of R_ij^2 (0 for decorrelated channels, 1 for identical ones)."""
    r = channel_correlation(z)
    d = r.shape[0]
    off = r - torch.diag_embed(torch.diagonal(r))
    return (off**2).sum() / max(d * (d - 1), 1)


def independence_match_loss(zs: Tensor, zt: Tensor) -> Tensor:
    """Variant ``match``: ||R_s - R_t||_F^2 with the teacher's correlation as a fixed target."""
    return ((channel_correlation(zs) - channel_correlation(zt.detach())) ** 2).sum()


def mean_abs_offdiag_corr(z: Tensor) -> Tensor:
    """Diagnostic: mean |R_ij| over i != j (lower = more independent channels)."""
    r = channel_correlation(z)
    d = r.shape[0]
    off = (r - torch.diag_embed(torch.diagonal(r))).abs()
    return off.sum() / max(d * (d - 1), 1)


def _uniformity_of(u: Tensor, t: float) -> Tensor:
    """log mean_{i != j} exp(-t ||u_i - u_j||^2) for rows (..., n, d) of unit vectors -> (...)."""
    n = u.shape[-2]
    if n < 2:  # why: no pairs -> the mean over i != j is undefined; contribute nothing
        return u.sum(dim=(-1, -2)) * 0.0
    sq = (2 - 2 * u @ u.transpose(-1, -2)).clamp_min(0)  # ||a-b||^2 of unit vectors
    mask = ~torch.eye(n, dtype=torch.bool, device=u.device)
    vals = (-t * sq)[..., mask]
    return torch.logsumexp(vals, dim=-1) - torch.log(torch.tensor(float(n * (n - 1)), device=u.device))


def uniformity_loss(
    h: Tensor,
    variant: Literal["pooled", "flatten", "spatial"] = "pooled",
    t: float = 2.0,
    max_positions: int = 256,
) -> Tensor:
    """L_uni of an intermediate map (lower = more uniform on the sphere).

    Args:
        h: (B, C, h, w) feature map, or (B, D) vectors (then pooled == flatten).
        variant: "pooled" (global average pool), "flatten" (whole map), "spatial" (positions per
            sample, averaged; at most ``max_positions`` evenly strided positions per sample).
        t: the kernel's temperature (2 in Wang & Isola and methods.md).
    """
    h = h.float()
    if variant == "spatial":
        if h.dim() != 4:
            raise ConfigError("uniformity variant 'spatial' needs a (B, C, h, w) feature map")
        tokens = h.flatten(2).transpose(1, 2)  # (B, hw, C)
        step = max(1, -(-tokens.shape[1] // max_positions))
        tokens = tokens[:, ::step]
        return _uniformity_of(F.normalize(tokens, dim=-1), t).mean()
    if h.dim() == 4:
        h = h.mean(dim=(2, 3)) if variant == "pooled" else h.flatten(1)
    if h.shape[0] < 2:
        return h.sum() * 0.0
    return _uniformity_of(F.normalize(h, dim=-1), t)


@dataclass(frozen=True)
class DSConfig(KDConfig):
    """Options of ``--method ds`` (weights are this project's defaults; the paper gives no code).

    Attributes:
        kd_weight: lambda_kd of the logit-KD term (0 turns KD off).
        ind_weight, uni_weight: lambda_ind, lambda_uni.
        ind_variant: "independent" (decorrelate the student) or "match" (match the teacher's R).
        uni_variant: "pooled" | "flatten" | "spatial" (see :func:`uniformity_loss`).
        uni_t: the uniformity temperature t.
        ind_feature, uni_feature: which feature taps the terms read.
    """

    ind_weight: float = 1.0
    uni_weight: float = 0.5
    ind_variant: Literal["independent", "match"] = "independent"
    uni_variant: Literal["pooled", "flatten", "spatial"] = "pooled"
    uni_t: float = 2.0
    ind_feature: str = "embed"
    uni_feature: str = "map"

    def __post_init__(self) -> None:
        if self.ind_variant not in ("independent", "match"):
            raise ValueError(f"ind_variant must be independent|match, got {self.ind_variant!r}")
        if self.uni_variant not in ("pooled", "flatten", "spatial"):
            raise ValueError(f"uni_variant must be pooled|flatten|spatial, got {self.uni_variant!r}")
        if min(self.ind_weight, self.uni_weight, self.kd_weight, self.ce_weight) < 0 or self.uni_t <= 0:
            raise ValueError("weights must be >= 0 and uni_t > 0")


class DimensionalStructure(LogitKD):
    """CE + lambda_kd KD + lambda_ind L_ind + lambda_uni L_uni (arXiv 2306.15977, methods.md s.3)."""

    name = "ds"
    Config = DSConfig

    @property
    def needs_teacher(self) -> bool:  # type: ignore[override]
        return self.cfg.kd_weight > 0 or self.cfg.ind_variant == "match"

    def setup(self, ctx: DistillContext) -> None:
        """Check that the ``match`` variant compares features of equal width."""
        if self.cfg.ind_variant == "match" and ctx.teacher is not None:
            ds_, dt = _dim(ctx.student, self.cfg.ind_feature), _dim(ctx.teacher, self.cfg.ind_feature)
            if ds_ is not None and dt is not None and ds_ != dt:
                raise ConfigError(
                    f"ds ind_variant=match needs equal {self.cfg.ind_feature} widths (student {ds_}, teacher {dt})",
                    "use --method-opt ind_variant=independent or a student of the teacher's width",
                )

    def forward(self, s: ModelOutput, t: ModelOutput | None, targets: Tensor) -> LossOutput:
        c = self.cfg
        ce = self.task_loss(s.logits, targets)
        total = c.ce_weight * ce
        parts = {"ce": ce.detach()}
        if c.kd_weight > 0:
            if t is None:
                raise ConfigError("ds with kd_weight > 0 needs a teacher")
            kd = self.kd_term(s, t)
            total = total + c.kd_weight * kd
            parts["kd"] = kd.detach()
        if c.ind_weight > 0:
            z = s.feats[c.ind_feature]
            if c.ind_variant == "match":
                if t is None:
                    raise ConfigError("ds ind_variant=match needs a teacher")
                ind = independence_match_loss(z, t.feats[c.ind_feature])
            else:
                ind = independence_loss(z)
            total = total + c.ind_weight * ind
            parts["ind"] = ind.detach()
        if c.uni_weight > 0:
            uni = uniformity_loss(s.feats[c.uni_feature], c.uni_variant, c.uni_t)
            total = total + c.uni_weight * uni
            parts["uni"] = uni.detach()
        return LossOutput(total, parts)


def _dim(model: torch.nn.Module, key: str) -> int | None:
    dims = getattr(model, "feature_dims", None)
    return int(dims[key]) if isinstance(dims, dict) and key in dims else None
