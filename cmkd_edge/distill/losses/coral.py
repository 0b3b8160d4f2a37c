"""Distribution alignment for SemBridge (Wei et al., AAAI 2026, arXiv 2511.08901): CORAL and Sinkhorn OT.

CORAL (Sun & Saenko 2016) in the SemBridge authors' convention (methods.md s.4; reference code
weirl-922/ACKD@21a20f8 ``utils/loss_kd.py::CORAL``):
    C(X) = (X - mean)^T (X - mean)      (NOT divided by n - 1 or n)
    CORAL(X_s, X_t) = mean over the d x d entries of (C_s - C_t)^2 / (4 d) = ||C_s - C_t||_F^2 / (4 d^3)
An unnormalised C grows with the number of rows n, so the loss grows like n^2: at the authors' batch
of 256 it is ~256x larger than at batch 16. ``batch_ref`` removes that dependence (docs/methods.md
s.4, "covariance scale"): C is rescaled by (batch_ref - 1) / (n - 1), so E[C] = (batch_ref - 1) Sigma
at every batch size - exactly the authors' value at n = batch_ref, and the same order of magnitude
at any other n (a small batch adds sampling noise to C, of relative size ~ sqrt(d / n), which the
squared difference turns into a positive bias). ``batch_ref=None`` is the raw, batch-dependent form.
Deep CORAL's paper divides by 4 d^2 with covariances divided by n - 1; ``convention="deep-coral"``
selects that form (batch-independent by construction). The SemBridge paper frames alignment as
entropic optimal transport solved with Lagrangian optimisation; :func:`sinkhorn_loss` is an exact
entropic-OT (log-domain Sinkhorn) option.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor


def covariance(x: Tensor, normalise: bool = False) -> Tensor:
    """C = (X - mean)^T (X - mean) for x (n, d); divided by n - 1 if ``normalise``."""
    xc = x.float() - x.float().mean(0, keepdim=True)
    c = xc.T @ xc
    return c / max(x.shape[0] - 1, 1) if normalise else c


def coral_loss(
    xs: Tensor,
    xt: Tensor,
    convention: Literal["sembridge", "deep-coral"] = "sembridge",
    batch_ref: int | None = None,
) -> Tensor:
    """CORAL distance between the second-order statistics of two sample sets.

    Args:
        xs: (n_s, d) student samples (rows); xt: (n_t, d) teacher samples, same d.
        convention: "sembridge" = ||C_s - C_t||_F^2 / (4 d^3) with unnormalised C (the authors' code);
            "deep-coral" = ||C_s - C_t||_F^2 / (4 d^2) with C / (n - 1) (Sun & Saenko 2016).
        batch_ref: "sembridge" only: rescale each C by (batch_ref - 1) / (n - 1), the loss the authors'
            code gives at batch ``batch_ref`` whatever n is (None: raw, grows like n^2).
    Returns:
        scalar; 0 for identical sets and unchanged by adding a constant vector to either set.
    """
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"CORAL needs equal widths, got {xs.shape[1]} and {xt.shape[1]}")
    d, ns, nt = xs.shape[1], xs.shape[0], xt.shape[0]
    norm = convention == "deep-coral"
    if norm:
        fs, ft = 1 / max(ns - 1, 1), 1 / max(nt - 1, 1)
    elif batch_ref is not None:
        fs, ft = (batch_ref - 1) / max(ns - 1, 1), (batch_ref - 1) / max(nt - 1, 1)
    else:
        fs = ft = 1.0
    denom = 4.0 * d**2 if norm else 4.0 * d**3
    if d <= max(ns, nt):
        diff = fs * covariance(xs) - ft * covariance(xt)
        return (diff**2).sum() / denom
    # why the Gram form: SemBridge's per-sample patch rows have d = N*C (thousands) but n = batch rows;
    # ||fs Xs^T Xs - ft Xt^T Xt||_F^2 = fs^2 ||Xs Xs^T||^2 + ft^2 ||Xt Xt^T||^2 - 2 fs ft ||Xs Xt^T||^2
    # needs n x n products instead of a d x d matrix (exact, centred X)
    a = xs.float() - xs.float().mean(0, keepdim=True)
    b = xt.float() - xt.float().mean(0, keepdim=True)
    sq = (fs**2) * ((a @ a.T) ** 2).sum() + (ft**2) * ((b @ b.T) ** 2).sum() - 2 * fs * ft * ((a @ b.T) ** 2).sum()
    return sq.clamp_min(0) / denom


def sinkhorn_loss(
    xs: Tensor,
    xt: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    eps: float = 0.05,
    iters: int = 50,
) -> Tensor:
    """Entropic OT cost <P, M> between point clouds, P from log-domain Sinkhorn iterations.

    Args:
        xs: (n, d), xt: (m, d) point sets (L2-normalised here, so the cost 1 - cos lies in [0, 2]).
        a, b: marginals (n,), (m,) summing to 1 (default uniform) - e.g. the attention patch weights.
        eps: entropic regulariser; iters: Sinkhorn iterations (the plan is treated as a constant, the
            envelope theorem's gradient of the OT cost).
    """
    xs = torch.nn.functional.normalize(xs.float(), dim=-1)
    xt = torch.nn.functional.normalize(xt.float(), dim=-1)
    cost = 1 - xs @ xt.T
    n, m = cost.shape
    log_a = torch.log(a) if a is not None else torch.full((n,), -math.log(n), device=cost.device)
    log_b = torch.log(b) if b is not None else torch.full((m,), -math.log(m), device=cost.device)
    with torch.no_grad():
        k = -cost.detach() / eps
        f = torch.zeros(n, device=cost.device)
        g = torch.zeros(m, device=cost.device)
        for _ in range(iters):
            f = log_a - torch.logsumexp(k + g[None, :], dim=1)
            g = log_b - torch.logsumexp(k + f[:, None], dim=0)
        plan = torch.exp(k + f[:, None] + g[None, :])
    return (plan * cost).sum()
