"""Simulate a Sentinel-1 VV/VH view of an optical patch (the ``sar-sim`` view; always synthetic).

Real SAR is scarce next to optical data, so a student can be prototyped on SAR-like input derived
from Sentinel-2: spectral indices decide the scattering mechanism of each pixel, each mechanism has a
typical C-band backscatter, and multiplicative speckle gives the image SAR's noise statistics.

* water (NDWI = (G - NIR) / (G + NIR) high): specular reflection, dark (VV ~ -25 dB, VH ~ -31 dB);
* vegetation (NDVI = (NIR - R) / (NIR + R)): volume scattering, VV ~ -8 dB, VH ~ -15 dB at full cover;
* built-up (NDBI = (SWIR - NIR) / (SWIR + NIR) high, not vegetated): double bounce, bright
  (VV ~ +1 dB, VH ~ -7 dB);
* everything else (bare soil): surface scattering, VV ~ -15 dB, VH ~ -23 dB.

Covers are mixed per pixel in linear power, then multiplied by speckle ``Gamma(L, 1/L)`` (mean 1,
variance 1/L: the intensity of an L-look image), independently per channel, then converted to dB.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cmkd_edge.data.bands import band_indices
from cmkd_edge.errors import DataError

#: Optical bands the simulation reads: green, red, NIR, SWIR-1.
SIM_BANDS: tuple[str, ...] = ("B03", "B04", "B08", "B11")

#: Mean backscatter (dB) per cover: (VV, VH).
BACKSCATTER_DB: dict[str, tuple[float, float]] = {
    "water": (-25.0, -31.0),
    "vegetation": (-8.0, -15.0),
    "urban": (1.0, -7.0),
    "bare": (-15.0, -23.0),
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / np.maximum(a + b, 1e-6)


def cover_fractions(optical: np.ndarray, band_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Soft per-pixel fractions of water, vegetation, urban and bare cover (sum to 1).

    Args:
        optical: ``(..., B, H, W)`` reflectance (any linear scale; indices are ratios).
        band_names: names of the B bands; must include B03, B04, B08, B11.

    Returns:
        ``{cover: (..., H, W) float64}``.
    """
    idx = band_indices(SIM_BANDS, band_names)
    if idx is None:
        missing = [b for b in SIM_BANDS if b not in band_names]
        raise DataError(
            f"sar-sim needs bands {','.join(SIM_BANDS)}; the optical source lacks {','.join(missing)}"
        )
    x = np.asarray(optical, dtype=np.float64)
    green, red, nir, swir = (np.take(x, i, axis=-3) for i in idx)
    ndwi, ndvi, ndbi = _ratio(green, nir), _ratio(nir, red), _ratio(swir, nir)
    water = _sigmoid((ndwi - 0.05) / 0.04)
    veg = np.clip((ndvi - 0.15) / 0.55, 0.0, 1.0)
    urban = _sigmoid((ndbi - 0.0) / 0.05) * (1.0 - veg)
    land = 1.0 - water
    fractions = {
        "water": water,
        "urban": land * urban,
        "vegetation": land * (1.0 - urban) * veg,
    }
    fractions["bare"] = land * (1.0 - urban) * (1.0 - veg)
    return fractions


def mean_backscatter(optical: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    """Speckle-free backscatter in linear power, ``(..., 2, H, W)`` float64, channels VV, VH."""
    fractions = cover_fractions(optical, band_names)
    channels = []
    for pol in range(2):
        power = sum(f * 10.0 ** (BACKSCATTER_DB[c][pol] / 10.0) for c, f in fractions.items())
        channels.append(power)
    return np.stack(channels, axis=-3)


def speckle(shape: tuple[int, ...], looks: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative speckle of an L-look intensity image: ``Gamma(L, 1/L)`` (mean 1, var 1/L)."""
    return rng.gamma(shape=looks, scale=1.0 / looks, size=shape)


def simulate_sar(optical: np.ndarray, band_names: Sequence[str], rng: np.random.Generator,
                 looks: float = 4.0) -> np.ndarray:
    """Simulated VV/VH backscatter in dB of an optical patch.

    Args:
        optical: ``(..., B, H, W)`` optical reflectance.
        band_names: names of its B bands (needs B03, B04, B08, B11).
        rng: source of the speckle (pass a fresh stream per epoch for augmentation).
        looks: number of looks L of the speckle (larger = less noisy).

    Returns:
        ``(..., 2, H, W)`` float32, dB, channels VV, VH.
    """
    if looks <= 0:
        raise DataError(f"sar-sim looks must be > 0, got {looks}")
    power = mean_backscatter(optical, band_names)
    power = power * speckle(power.shape, looks, rng)
    return (10.0 * np.log10(np.maximum(power, 1e-10))).astype(np.float32)
