"""Training augmentation, chosen per view (``View.augment``), applied alike to every view of a sample.

Two augmentations, by name (``AUGMENTATIONS``):

* ``dihedral`` - the 8 flips/90-degree rotations (D4). Nadir imagery has no "up", so every element
  gives a plausible patch, and unlike crops or colour jitter it changes neither radiometry nor
  scale: the default of optical and Sentinel-1 views.
* ``crop`` - a random ``crop x crop`` window of the chip (A-ConvNets, Chen et al. 2016: random
  88x88 crops of 128x128 MSTAR chips; evaluation and the deployed graph take the centre window):
  the default of radar chip views. Rotations are wrong there: a SAR chip is side-looking, the
  radar shadow falls away from the sensor, and a rotated chip shows a shadow no sensor produces.
* ``gain`` - one random radiometric gain per sample, log-uniform in ``GAIN_RANGE`` (+-2.5 dB of
  amplitude), applied to the whole chip's magnitude before crop and scale, re-clipped to 8 bits.
  Why: an 8-bit magnitude product is scaled by its processor, and the scale moves with geometry -
  on MSTAR the 15-degree test chips are about 1 dB darker than the 17-degree training chips, and a
  net trained without it loses ~12 points there (aconv, 30 epochs, seed 0: 98.9 % val, 87.0 % test;
  a global gain of 1.13 on the test chips alone gives 95.1 %). With ``aug=crop+gain`` the same run
  scored 93.6 % test, +6.6 points [+5.4, +7.8] paired on the 2,425 test chips (2026-11-26, see
  docs/benchmarks.md). Chip views opt in with ``aug=crop+gain``. The view option ``norm=mean``
  (subtract each chip's mean dB, in the graph) removes the gain itself and did more (86.3 % ->
  96.3 % test at 20 epochs); gain augmentation then only varies where the 8-bit scale saturates.

Why one draw per sample shared by views: a teacher and a student read views of the same ground, so
views that share an augmentation get the same flip (one D4 element) or the same window (one offset
per full-chip size and crop size).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from cmkd_edge._registry import Registry

AUGMENTATIONS: Registry[Callable[..., Any]] = Registry("augmentation")


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


#: Range of the ``gain`` augmentation (amplitude factor; 0.75-1.33 = -2.5..+2.5 dB).
GAIN_RANGE = (0.75, 1.0 / 0.75)


def random_gain(rng: np.random.Generator) -> float:
    """A log-uniform amplitude gain in :data:`GAIN_RANGE`."""
    lo, hi = np.log(GAIN_RANGE[0]), np.log(GAIN_RANGE[1])
    return float(np.exp(rng.uniform(lo, hi)))


def random_offset(hw: tuple[int, int], crop: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a uniformly random ``crop x crop`` window inside ``hw``."""
    return int(rng.integers(hw[0] - crop + 1)), int(rng.integers(hw[1] - crop + 1))


AUGMENTATIONS.add("dihedral", random_dihedral, "random flip/90-degree rotation (D4), for nadir patches")
AUGMENTATIONS.add("crop", random_offset, "random window of the view's crop size (A-ConvNets), for chips")
AUGMENTATIONS.add("gain", random_gain, "random radiometric gain (+-2.5 dB) of a chip's 8-bit magnitude")


def augmented_views(views: Mapping[str, Any], sample: Mapping[str, np.ndarray],
                    rng: np.random.Generator,
                    plain: Callable[[Any], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Every view of ``sample`` with the augmentations each view allows (``view.augment``).

    Chip views (``full``/``finish``) with ``crop`` or ``gain`` in ``augment`` are computed in full,
    multiplied by one gain per sample (``gain``) and cropped at a random offset shared by views of
    the same full size and crop size (``crop``; else the centre); then one D4 element is applied to
    every view with ``dihedral`` in ``augment``.
    """
    out: dict[str, np.ndarray] = {}
    offsets: dict[tuple[int, int, int], tuple[int, int]] = {}
    gain: list[float] = []
    for name, view in views.items():
        chip_aug = {"crop", "gain"} & set(view.augment)
        if chip_aug and hasattr(view, "finish"):
            full = view.full(sample, rng)
            if "gain" in chip_aug:
                if not gain:
                    gain.append(random_gain(rng))
                full = np.clip(full * np.float32(gain[0]), 0.0, 255.0).astype(np.float32)
            offset = None
            if "crop" in chip_aug and view.crop:
                key = (*full.shape[-2:], view.crop)
                if key not in offsets:
                    offsets[key] = random_offset(full.shape[-2:], view.crop, rng)
                offset = offsets[key]
            out[name] = view.finish(full, offset)
        else:
            out[name] = plain(view) if plain is not None else view(sample, rng)
    turn = [n for n, v in views.items() if "dihedral" in v.augment]
    if turn:
        out.update(random_dihedral({n: out[n] for n in turn}, rng))
    return out
