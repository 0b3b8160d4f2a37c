"""Blending overlapping patch predictions into a seamless map, and measuring the seams that remain.

Why: a patch classifier sees only its window, so neighbouring windows disagree near their borders.
Painting each pixel with its nearest patch (``blend="none"``, the tiling rule in ``scene.py``) keeps
those disagreements as straight seams along the window grid. With ``stride < patch`` every pixel
lies in several windows; weighting each window's class probabilities by a smooth window that falls
towards its border and normalising by the summed weights makes the map continuous across window
borders (the class map is the argmax of the blend):

* ``hann``: ``w(i) = sin^2(pi * (i + 0.5) / P)``, the Hann window sampled at pixel centres, so it is
  positive at every pixel (a pixel covered by a single window - the scene's edge - keeps that
  window's probabilities exactly up to rounding) and sums to a constant at ``stride = P/2``.
* ``ramp``: a linear ramp ``min(i + 0.5, P - i - 0.5) / (P/2)`` (a tent), also positive everywhere.

The 2-D weight is the outer product of the row and column windows. ``none`` gives each patch weight
1 on its own cell and 0 elsewhere, which reproduces the nearest-patch painting exactly.

:class:`RowAccumulator` holds the running sums for one band of ``patch`` rows across the scene's
width: after all patches of a patch row are added, the rows above the next patch row's origin can
receive nothing more; they are read out a column chunk at a time (:meth:`RowAccumulator.finished`)
and dropped (:meth:`RowAccumulator.advance`). Memory is ``classes x patch x width`` float32 whatever
the scene's height, plus one chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cmkd_edge.errors import ConfigError

BLENDS = ("hann", "ramp", "none")


def window_1d(kind: str, size: int) -> np.ndarray:
    """The 1-D weight of a window of ``size`` pixels (positive at every pixel), float32."""
    i = np.arange(size, dtype=np.float64) + 0.5
    if kind == "hann":
        w = np.sin(np.pi * i / size) ** 2
    elif kind == "ramp":
        w = np.minimum(i, size - i) / (size / 2)
    elif kind == "none":
        w = np.ones(size)
    else:
        raise ConfigError(f"unknown blend {kind!r}", f"choose one of {', '.join(BLENDS)}")
    return w.astype(np.float32)


class RowAccumulator:
    """Weighted sums of class probabilities over the ``patch`` rows starting at ``top``."""

    def __init__(self, classes: int, patch_h: int, width: int) -> None:
        self.top = 0
        self.acc = np.zeros((classes, patch_h, width), np.float32)
        self.wsum = np.zeros((patch_h, width), np.float32)

    def add(self, probs: np.ndarray, weight: np.ndarray, row: int, col: int) -> None:
        """Add one patch's probabilities (K,) with its 2-D weight (h, w) at scene (row, col)."""
        r = row - self.top
        h, w = weight.shape
        self.acc[:, r:r + h, col:col + w] += probs[:, None, None] * weight
        self.wsum[r:r + h, col:col + w] += weight

    def finished(self, until: int, chunk: int = 1024) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """The blend of rows ``[top, until)``, ``chunk`` columns at a time: (first column, probabilities
        (K, n, c) NaN where no window reached, reached mask (n, c)).

        Why chunks: a (K, n, width) array per flush would make memory grow with the scene's width
        again; then call :meth:`advance`.
        """
        n = until - self.top
        for c0 in range(0, self.wsum.shape[1], chunk):
            w = self.wsum[:n, c0:c0 + chunk]
            seen = w > 0
            probs = self.acc[:, :n, c0:c0 + chunk] / np.where(seen, w, 1)
            probs[:, ~seen] = np.nan
            yield c0, probs, seen

    def advance(self, until: int, chunk: int = 1024) -> None:
        """Drop the finished rows above ``until``; nothing may be added above it any more."""
        n, size = until - self.top, self.wsum.shape[0]
        for c0 in range(0, self.wsum.shape[1], chunk):
            cols = slice(c0, c0 + chunk)
            if n < size:  # shift the unfinished rows up (copy: the slices overlap)
                self.acc[:, :size - n, cols] = self.acc[:, n:, cols].copy()
                self.wsum[:size - n, cols] = self.wsum[n:, cols].copy()
            self.acc[:, size - n:, cols] = 0
            self.wsum[size - n:, cols] = 0
        self.top = until


@dataclass(frozen=True)
class SeamStats:
    """Class changes between neighbouring pixels, on window-border lines and on all other lines."""

    border_changes: int
    border_pairs: int
    interior_changes: int
    interior_pairs: int

    @property
    def border_rate(self) -> float:
        return self.border_changes / self.border_pairs if self.border_pairs else float("nan")

    @property
    def interior_rate(self) -> float:
        return self.interior_changes / self.interior_pairs if self.interior_pairs else float("nan")

    @property
    def ratio(self) -> float:
        """Border rate / interior rate: ~1 for a seamless map; inf when every change sits on a border."""
        if self.interior_changes == 0:
            return float("inf") if self.border_changes else float("nan")
        return self.border_rate / self.interior_rate


def seam_stats(class_map: np.ndarray, row_lines: list[int], col_lines: list[int]) -> SeamStats:
    """Count class changes across the given lines (window borders) versus across all other lines.

    Args:
        class_map: (H, W) classes.
        row_lines / col_lines: a line ``b`` is the boundary between pixel rows (columns) ``b-1`` and ``b``;
            typically every window origin and window end inside the scene.
    """
    v = class_map[1:, :] != class_map[:-1, :]  # v[b-1]: change between rows b-1 and b
    h = class_map[:, 1:] != class_map[:, :-1]
    rb = np.zeros(class_map.shape[0] - 1, bool)
    rb[[b - 1 for b in set(row_lines) if 0 < b < class_map.shape[0]]] = True
    cb = np.zeros(class_map.shape[1] - 1, bool)
    cb[[b - 1 for b in set(col_lines) if 0 < b < class_map.shape[1]]] = True
    bc = int(v[rb].sum() + h[:, cb].sum())
    bp = int(rb.sum() * v.shape[1] + cb.sum() * h.shape[0])
    ic = int(v[~rb].sum() + h[:, ~cb].sum())
    ip = int((~rb).sum() * v.shape[1] + (~cb).sum() * h.shape[0])
    return SeamStats(bc, bp, ic, ip)


def window_lines(tiles: list[tuple[int, int, int]], patch: int) -> list[int]:
    """Every window start and end along one axis of ``scene.axis_tiles``' output."""
    return sorted({o for o, _, _ in tiles} | {o + patch for o, _, _ in tiles})


__all__ = ["BLENDS", "RowAccumulator", "SeamStats", "seam_stats", "window_1d", "window_lines"]
