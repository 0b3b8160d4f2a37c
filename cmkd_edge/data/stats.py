"""Per-band normalisation statistics of a view, over exactly the dataset given (the training split).

Statistics are computed in chunks of whole batches (vectorised over samples and pixels) and merged
with Chan et al.'s parallel variance formula, so they are exact in float64 without holding the data
twice. They are stored with the checkpoint and baked into the exported model (``InputNorm``).

Values are clipped to the view's ``clip`` first, because ``InputNorm`` clamps before it normalises:
statistics of unclipped values (a few saturated or outlier pixels) would not describe what the
normalisation actually sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: Smallest std returned: a constant band must not divide by zero in the model.
MIN_STD = 1e-6


def _merge(acc: tuple[float, np.ndarray, np.ndarray], x: np.ndarray,
           clip: tuple[float, float] | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Merge a chunk ``(n, C, H, W)`` into running ``(count, mean, M2)`` per channel."""
    n_b = float(x.shape[0] * x.shape[2] * x.shape[3])
    x = x.astype(np.float64, copy=False)
    if clip is not None:
        x = np.clip(x, clip[0], clip[1])  # same order as InputNorm: clamp, then normalise
    mean_b = x.mean(axis=(0, 2, 3))
    m2_b = ((x - mean_b[None, :, None, None]) ** 2).sum(axis=(0, 2, 3))
    n_a, mean_a, m2_a = acc
    if n_a == 0:
        return n_b, mean_b, m2_b
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * n_b / n, m2_a + m2_b + delta**2 * n_a * n_b / n


def band_stats(dataset: Any, view_name: str, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std of ``view_name`` over ``dataset``, after the view's clip.

    Args:
        dataset: a :class:`~cmkd_edge.data.dataset.ViewDataset` (or a ``torch.utils.data.Subset``
            of one); any other dataset yielding ``(views, label)`` is iterated item by item.
        view_name: the view's name in ``dataset.views``.
        chunk: samples per vectorised chunk.

    Returns:
        ``(mean, std)``, each ``(C,)`` float64; std is at least :data:`MIN_STD`.
    """
    base, items = dataset, None
    while hasattr(base, "dataset") and hasattr(base, "indices") and not hasattr(base, "view_batch"):
        items = np.asarray(base.indices) if items is None else np.asarray(base.indices)[items]
        base = base.dataset
    views = getattr(base, "views", None)
    clip = getattr(views.get(view_name), "clip", None) if isinstance(views, Mapping) else None
    acc: tuple[float, Any, Any] = (0.0, None, None)
    if hasattr(base, "view_batch"):
        pos = np.arange(len(base)) if items is None else items
        for start in range(0, len(pos), chunk):
            acc = _merge(acc, base.view_batch(view_name, pos[start:start + chunk]), clip)
    else:
        for i in range(len(dataset)):
            x = np.asarray(dataset[i][0][view_name])[None]
            acc = _merge(acc, x, clip)
    count, mean, m2 = acc
    if count == 0:
        raise ValueError("band_stats needs a non-empty dataset")
    std = np.sqrt(m2 / count)
    return mean, np.maximum(std, MIN_STD)
