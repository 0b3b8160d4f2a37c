"""Dimensional-structure losses (arXiv 2306.15977): documented properties."""

from __future__ import annotations

import torch

from cmkd_edge.distill.losses.ds import (
    independence_loss,
    independence_match_loss,
    mean_abs_offdiag_corr,
    uniformity_loss,
)


def _whiten(z: torch.Tensor) -> torch.Tensor:
    z = z - z.mean(0)
    cov = z.T @ z / z.shape[0]
    evals, evecs = torch.linalg.eigh(cov)
    return z @ evecs @ torch.diag(evals.rsqrt()) @ evecs.T


def test_independence_near_zero_for_whitened_and_large_for_duplicated() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(256, 8, generator=g) @ torch.randn(8, 8, generator=g)  # correlated
    assert independence_loss(z) > 0.05
    assert independence_loss(_whiten(z)) < 1e-6
    dup = torch.randn(256, 4, generator=g).repeat(1, 2)  # channels 4..7 copy 0..3
    assert independence_loss(dup) > 0.13  # 8 of 56 off-diagonal entries are exactly 1
    assert mean_abs_offdiag_corr(dup) > mean_abs_offdiag_corr(_whiten(z))


def test_independence_match_zero_against_itself() -> None:
    z = torch.randn(64, 6)
    assert independence_match_loss(z, z.clone()) < 1e-8
    assert independence_match_loss(z, z[:, [1, 0, 2, 3, 4, 5]] * 0 + torch.randn(64, 6)) > 0


def test_uniformity_lower_for_spread_than_collapsed() -> None:
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(128, 16, generator=g)
    collapsed = torch.ones(128, 16) + 0.01 * torch.randn(128, 16, generator=g)
    assert uniformity_loss(spread) < uniformity_loss(collapsed) - 1.0
    assert abs(float(uniformity_loss(collapsed))) < 1e-2  # log mean exp(0) = 0
    # the same ordering holds for maps, pooled and spatial
    spread_map = torch.randn(8, 16, 4, 4, generator=g)
    coll_map = torch.ones(8, 16, 4, 4)
    for variant in ("pooled", "flatten", "spatial"):
        assert uniformity_loss(spread_map, variant) < uniformity_loss(coll_map, variant)


def test_spatial_uniformity_of_a_single_position_is_finite() -> None:
    assert torch.isfinite(uniformity_loss(torch.randn(4, 8, 1, 1), "spatial"))
