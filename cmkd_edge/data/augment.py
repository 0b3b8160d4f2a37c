"""Augmentation valid for overhead imagery: the 8 flips/90-degree rotations (dihedral group D4).

Nadir imagery has no "up", so every element of D4 gives a plausible patch, and unlike crops or
colour jitter it changes neither radiometry nor scale. The same transform is applied to every view
of a sample, so a teacher and a student still see the same ground.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def dihedral(arr: np.ndarray, k: int) -> np.ndarray:
    """Element ``k`` (0..7) of D4 on the last two axes: rotate by ``k % 4`` quarter turns, then
    flip left-right when ``k >= 4``."""
    out = np.rot90(arr, k % 4, axes=(-2, -1))
    if k >= 4:
        out = out[..., ::-1]
    return out


def random_dihedral(arrays: Mapping[str, np.ndarray], rng: np.random.Generator
                    ) -> dict[str, np.ndarray]:
    """Apply one random D4 element to every array (``(C, H, W)``, all the same H, W).

    Non-square patches only get the transforms that keep their shape (180 degrees and flips).
    """
    shapes = {a.shape[-2:] for a in arrays.values()}
    square = all(h == w for h, w in shapes)
    k = int(rng.integers(8)) if square else int(rng.choice([0, 2, 4, 6]))
    return {name: np.ascontiguousarray(dihedral(a, k)) for name, a in arrays.items()}
