"""Training augmentation, chosen per view (``View.augment``), applied alike to every view of a sample.

Two augmentations, by name (``AUGMENTATIONS``):

* ``dihedral`` - the 8 flips/90-degree rotations (D4). Nadir imagery has no "up", so every element
  gives a plausible patch, and unlike crops or colour jitter it changes neither radiometry nor
  scale: the default of optical and Sentinel-1 views.
* ``crop`` - a random ``crop x crop`` window of the chip (A-ConvNets, Chen et al. 2016: random
  88x88 crops of 128x128 MSTAR chips; evaluation and the deployed graph take the centre window):
  the default of radar chip views. Rotations are wrong there: a SAR chip is side-looking, the
  radar shadow falls away from the sensor, and a rotated chip shows a shadow no sensor produces.
* ``grid`` - the training-set expansion of the open A-ConvNets reproduction (99.18 %): every
  stride-1 window of the view's translation range (``shift=N``: ``(2N+1)^2`` positions, 49 at
  ``shift=3``) is a training sample. Here each chip visits its positions in its own fixed random
  order, one per epoch, so ``(2N+1)^2`` epochs hold exactly the reproduction's expanded set (every
  chip at every position once) without an epoch 49 times longer; against ``crop``, which draws a
  window at random and repeats some positions while missing others.
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


def _window_range(hw: tuple[int, int], crop: int, shift: int | None
                  ) -> tuple[tuple[int, int], tuple[int, int]]:
    """(top, left) of the lowest window and the positions per axis a crop may take: the whole
    chip, or ``shift`` pixels either side of the centre window."""
    if shift is None:
        return (0, 0), (hw[0] - crop + 1, hw[1] - crop + 1)
    top, left = (hw[0] - crop) // 2, (hw[1] - crop) // 2
    if shift > min(top, left):
        from cmkd_edge.errors import DataError

        raise DataError(f"a {crop}x{crop} window shifted by up to {shift} pixels does not fit a "
                        f"{hw[0]}x{hw[1]} chip", f"choose shift <= {min(top, left)}")
    return (top - shift, left - shift), (2 * shift + 1, 2 * shift + 1)


def random_offset(hw: tuple[int, int], crop: int, rng: np.random.Generator,
                  shift: int | None = None) -> tuple[int, int]:
    """Top-left corner of a uniformly random ``crop x crop`` window inside ``hw`` (within ``shift``
    pixels of the centre window when given)."""
    (top, left), (nh, nw) = _window_range(hw, crop, shift)
    return top + int(rng.integers(nh)), left + int(rng.integers(nw))


def grid_offset(hw: tuple[int, int], crop: int, shift: int | None, key: tuple[int, int],
                epoch: int) -> tuple[int, int]:
    """The window chip ``key`` = (seed, sample) takes at ``epoch``: its own fixed permutation of
    every stride-1 position, one position per epoch (``grid``)."""
    (top, left), (nh, nw) = _window_range(hw, crop, shift)
    order = np.random.default_rng([*key, 0x67726964]).permutation(nh * nw)
    pos = int(order[epoch % (nh * nw)])
    return top + pos // nw, left + pos % nw


AUGMENTATIONS.add("dihedral", random_dihedral, "random flip/90-degree rotation (D4), for nadir patches")
AUGMENTATIONS.add("crop", random_offset, "random window of the view's crop size (A-ConvNets), for chips")
AUGMENTATIONS.add("grid", grid_offset, "every stride-1 window of the translation range, one per "
                  "epoch per chip (the A-ConvNets reproduction's expanded set), for chips")
AUGMENTATIONS.add("gain", random_gain, "random radiometric gain (+-2.5 dB) of a chip's 8-bit magnitude")


def augmented_views(views: Mapping[str, Any], sample: Mapping[str, np.ndarray],
                    rng: np.random.Generator,
                    plain: Callable[[Any], np.ndarray] | None = None,
                    visit: tuple[tuple[int, int], int] | None = None) -> dict[str, np.ndarray]:
    """Every view of ``sample`` with the augmentations each view allows (``view.augment``).

    Chip views (``full``/``finish``) with ``crop`` or ``gain`` in ``augment`` are computed in full,
    multiplied by one gain per sample (``gain``) and cropped at a random offset shared by views of
    the same full size and crop size (``crop``; ``grid``: the position ``visit`` = ((seed,
    sample), epoch) takes in its chip's fixed order; else the centre); then one D4 element is
    applied to every view with ``dihedral`` in ``augment``.
    """
    out: dict[str, np.ndarray] = {}
    offsets: dict[tuple[Any, ...], tuple[int, int]] = {}
    gain: list[float] = []
    for name, view in views.items():
        chip_aug = {"crop", "grid", "gain"} & set(view.augment)
        if chip_aug and hasattr(view, "finish"):
            full = view.full(sample, rng)
            if "gain" in chip_aug:
                if not gain:
                    gain.append(random_gain(rng))
                full = np.clip(full * np.float32(gain[0]), 0.0, 255.0).astype(np.float32)
            offset = None
            shift = getattr(view, "shift", None)
            if {"crop", "grid"} & chip_aug and view.crop:
                key = (*full.shape[-2:], view.crop, shift)
                if key not in offsets:
                    if "grid" in chip_aug:
                        sample_key, epoch = visit if visit is not None else ((0, 0), 0)
                        offsets[key] = grid_offset(full.shape[-2:], view.crop, shift, sample_key, epoch)
                    else:
                        offsets[key] = random_offset(full.shape[-2:], view.crop, rng, shift)
                offset = offsets[key]
            out[name] = view.finish(full, offset)
        else:
            out[name] = plain(view) if plain is not None else view(sample, rng)
    turn = [n for n, v in views.items() if "dihedral" in v.augment]
    if turn:
        out.update(random_dihedral({n: out[n] for n in turn}, rng))
    return out
