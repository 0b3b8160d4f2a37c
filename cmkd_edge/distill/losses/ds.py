"""Dimensional-structure CMKD (Si, Dong, Qiang et al., arXiv 2306.15977), reconstructed per methods.md s.3.

Premise: the easy modality's features have a better dimensional structure - less correlated output
channels, more uniformly spread intermediate features - and imposing it on the hard-modality
student helps. The paper ships no code; the loss follows methods.md and every open choice is an
option of :class:`DSConfig`:

- channel independence on the penultimate features Z (B, D) (``feats["embed"]``): standardise each
  channel over the batch, R = Z^T Z / B,
  ``independent``: L_ind = mean_{i != j} R_ij^2;  ``match``: L_ind = mean_{i != j} (R_s - R_t)_ij^2
  against the teacher's R on the paired batch (needs equal D) - ||R_s - R_t||_F^2 / (D (D - 1)) over
  the off-diagonal entries, so both variants are on one scale (``independent`` is ``match`` against
  R_t = I);
- batch smaller than D: R then has rank <= B - 1, L_ind cannot go below
  (D - B + 1) / ((B - 1)(D - 1)) (:func:`independence_floor`), and the minimiser of that floor makes
  every pair of samples in the batch equally correlated, destroying class structure (issue 11).
  ``ind_guard``: ``queue`` (default) estimates R over the batch plus a FIFO queue of the previous
  batches' detached features (``ind_queue`` rows, default 2 D; gradients reach the current batch
  only), ``refuse`` stops with a clear message when B <= D, ``none`` is the per-batch estimate;
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


def independence_floor(batch: int, dim: int) -> float:
    """Lowest L_ind (``independent``) reachable from ``batch`` rows of ``dim`` standardised channels.

    R has unit diagonal and rank r <= min(batch - 1, dim), so ||R||_F^2 >= dim^2 / r and
    mean_{i != j} R_ij^2 >= (dim - r) / (r (dim - 1)); 0 once batch > dim.
    """
    r = min(batch - 1, dim)
    if r < 1 or dim < 2:
        return 1.0 if dim >= 2 else 0.0
    return max(dim - r, 0) / (r * (dim - 1))


def _offdiag_mean_sq(r: Tensor) -> Tensor:
    d = r.shape[0]
    off = r - torch.diag_embed(torch.diagonal(r))
    return (off**2).sum() / max(d * (d - 1), 1)


def independence_loss(z: Tensor, bank: Tensor | None = None) -> Tensor:
    """L_ind = mean over i != j of R_ij^2 (0 for decorrelated channels, 1 for identical ones).

    Args:
        z: (B, D) features (gradients flow here).
        bank: optional (M, D) detached features of earlier batches; R is estimated over all B + M rows.
    """
    rows = z if bank is None or bank.numel() == 0 else torch.cat([z, bank.to(z).detach()])
    return _offdiag_mean_sq(channel_correlation(rows))


def independence_match_loss(
    zs: Tensor, zt: Tensor, bank_s: Tensor | None = None, bank_t: Tensor | None = None
) -> Tensor:
    """Variant ``match``: mean over i != j of (R_s - R_t)_ij^2, the teacher's R a fixed target.

    The same scale as :func:`independence_loss` (which is this against R_t = I). ``bank_s`` / ``bank_t``:
    paired (M, D) detached features of earlier batches, as in :func:`independence_loss`.
    """
    if bank_s is not None and bank_s.numel():
        zs, zt = torch.cat([zs, bank_s.to(zs).detach()]), torch.cat([zt, bank_t.to(zt)])  # type: ignore[union-attr]
    return _offdiag_mean_sq(channel_correlation(zs) - channel_correlation(zt.detach()))


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
        ind_guard: what to do when the batch is not larger than the feature width D: "queue"
            (estimate R over a FIFO queue of earlier batches too), "refuse" (ConfigError), "none".
        ind_queue: rows kept in the queue (0 = 2 D, at least D + 1 rows with the batch).
        uni_variant: "pooled" | "flatten" | "spatial" (see :func:`uniformity_loss`).
        uni_t: the uniformity temperature t.
        ind_feature, uni_feature: which feature taps the terms read.
    """

    ind_weight: float = 1.0
    uni_weight: float = 0.5
    ind_variant: Literal["independent", "match"] = "independent"
    ind_guard: Literal["queue", "refuse", "none"] = "queue"
    ind_queue: int = 0
    uni_variant: Literal["pooled", "flatten", "spatial"] = "pooled"
    uni_t: float = 2.0
    ind_feature: str = "embed"
    uni_feature: str = "map"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ind_variant not in ("independent", "match"):
            raise ValueError(f"ind_variant must be independent|match, got {self.ind_variant!r}")
        if self.ind_guard not in ("queue", "refuse", "none"):
            raise ValueError(f"ind_guard must be queue|refuse|none, got {self.ind_guard!r}")
        if self.ind_queue < 0:
            raise ValueError(f"ind_queue must be >= 0, got {self.ind_queue}")
        if self.uni_variant not in ("pooled", "flatten", "spatial"):
            raise ValueError(f"uni_variant must be pooled|flatten|spatial, got {self.uni_variant!r}")
        if min(self.ind_weight, self.uni_weight, self.kd_weight, self.ce_weight) < 0 or self.uni_t <= 0:
            raise ValueError("weights must be >= 0 and uni_t > 0")


class DimensionalStructure(LogitKD):
    """CE + lambda_kd KD + lambda_ind L_ind + lambda_uni L_uni (arXiv 2306.15977, methods.md s.3)."""

    name = "ds"
    Config = DSConfig

    def __init__(self, cfg: DSConfig | None = None, task: str = "multiclass") -> None:
        super().__init__(cfg, task)
        # why plain attributes, not buffers: a queue of stale features is an estimate, not state worth
        # resuming, and a buffer would be broadcast (and its growth synchronised) by DDP
        self.queue_s: Tensor | None = None
        self.queue_t: Tensor | None = None

    def _independence(self, z: Tensor, zt: Tensor | None) -> Tensor:
        """L_ind with the batch-size guard (``ind_guard``); updates the queue when training."""
        c = self.cfg
        b, d = z.shape
        if c.ind_guard == "refuse" and b <= d:
            raise ConfigError(
                f"ds: batch {b} <= {c.ind_feature} width {d}: the channel correlation has rank <= {b - 1}, so "
                f"L_ind cannot go below {independence_floor(b, d):.3f} and its minimiser makes every pair in a "
                "batch equally correlated",
                f"use --batch-size > {d}, --method-opt ind_guard=queue, or ind_weight=0",
            )
        use_queue = c.ind_guard == "queue" and b <= d
        qs = self.queue_s if use_queue and self.queue_s is not None and self.queue_s.shape[-1] == d else None
        qt = self.queue_t
        if qs is None or zt is None or qt is None or qt.shape[0] != qs.shape[0]:
            qt = None
        if c.ind_variant == "match":
            loss = independence_match_loss(z, zt, qs, qt) if qt is not None else independence_match_loss(z, zt)
        else:
            loss = independence_loss(z, qs)
        if use_queue and torch.is_grad_enabled():
            size = c.ind_queue or 2 * d
            old_s = qs if qs is not None else z.new_zeros(0, d)
            self.queue_s = torch.cat([z.detach(), old_s])[:size]
            if zt is not None:
                old_t = qt if qt is not None else zt.new_zeros(0, d)
                self.queue_t = torch.cat([zt.detach(), old_t])[:size]
        return loss

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
            if c.ind_variant == "match" and t is None:
                raise ConfigError("ds ind_variant=match needs a teacher")
            ind = self._independence(z, t.feats[c.ind_feature].float() if c.ind_variant == "match" else None)
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
