"""Whole-dataset tensors: every sample's views stacked once, and models run over them in chunks.

SemBridge's teacher gallery, MFH's saliency set, ``cmkd-edge match`` and ``diagnose`` all need a split
as tensors rather than batches from a loader; this is the one place that reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor


def collect_views(dataset: Any, views: Sequence[str], limit: int | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """Stack ``views`` of every sample (in index order) and the labels, with augmentation off.

    Args:
        dataset: ``ds[i] -> (views: dict[str, Tensor], label)``; an ``augment`` attribute, when the
            dataset has one, is switched off while reading (gallery items must be deterministic).
        limit: read only the first ``limit`` samples.
    Returns:
        ({view: (N, C, H, W)}, labels (N,) or (N, K)).
    """
    had = hasattr(dataset, "augment")
    old = getattr(dataset, "augment", None)
    if had:
        try:
            dataset.augment = False
        except AttributeError:  # why: a read-only property; fall back to whatever it yields
            had = False
    try:
        n = len(dataset) if limit is None else min(limit, len(dataset))
        out: dict[str, list[Tensor]] = {v: [] for v in views}
        labels = []
        for i in range(n):
            v, y = dataset[i]
            for name in views:
                out[name].append(torch.as_tensor(v[name]))
            labels.append(torch.as_tensor(y))
    finally:
        if had:
            dataset.augment = old
    return {k: torch.stack(v) for k, v in out.items()}, torch.stack(labels)


@torch.no_grad()
def batched_forward(
    fn: Callable[[Tensor], Any], x: Tensor, device: torch.device | str = "cpu", batch_size: int = 64
) -> Any:
    """Apply ``fn`` to (N, ...) in chunks on ``device``; tensors (or tuples/dicts of them) concatenated on CPU."""
    parts = [fn(x[i : i + batch_size].to(device)) for i in range(0, x.shape[0], batch_size)]
    first = parts[0]
    if isinstance(first, Tensor):
        return torch.cat([p.cpu() for p in parts])
    if isinstance(first, tuple):
        return tuple(_cat([p[j] for p in parts]) for j in range(len(first)))
    return _cat(parts)


def _cat(parts: list[Any]) -> Any:
    if isinstance(parts[0], Tensor):
        return torch.cat([p.cpu() for p in parts])
    return {k: torch.cat([p[k].cpu() for p in parts]) for k in parts[0]}
