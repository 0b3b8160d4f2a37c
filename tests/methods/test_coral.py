"""CORAL in the SemBridge authors' convention, and the Sinkhorn option."""

from __future__ import annotations

import torch

from cmkd_edge.distill.losses.coral import coral_loss, covariance, sinkhorn_loss


def test_coral_zero_on_itself_and_shift_invariant() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g)
    y = torch.randn(40, 6, generator=g) * 2
    assert coral_loss(x, x) == 0
    shift = torch.randn(1, 6, generator=g) * 10
    assert torch.allclose(coral_loss(x + shift, y), coral_loss(x, y), rtol=1e-4)
    assert torch.allclose(coral_loss(x, y - shift), coral_loss(x, y), rtol=1e-4)
    assert coral_loss(x, y) > 0


def test_coral_formula_is_the_authors() -> None:
    x, y = torch.randn(30, 5), torch.randn(30, 5)
    cs = (x - x.mean(0)).T @ (x - x.mean(0))  # not divided by n
    ct = (y - y.mean(0)).T @ (y - y.mean(0))
    want = ((cs - ct) ** 2).mean() / (4 * 5)
    assert torch.allclose(coral_loss(x, y), want, rtol=1e-5)
    assert torch.allclose(covariance(x), cs, atol=1e-4)
    deep = (((cs - ct) / 29) ** 2).sum() / (4 * 25)
    assert torch.allclose(coral_loss(x, y, "deep-coral"), deep, rtol=1e-5)


def test_sinkhorn_small_for_identical_and_backpropagates() -> None:
    x = torch.randn(10, 4, requires_grad=True)
    far = torch.randn(10, 4)
    same = sinkhorn_loss(x, x.detach().clone(), eps=0.01, iters=200)
    assert same < sinkhorn_loss(x, far, eps=0.01, iters=200)
    same.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
