"""Band names, band orders and raw units of the sensors cmkd-edge reads.

Band order is a property of the file layout, not of the sensor, so every layout names its order here
once and everything else (views, deploy specs, the runtime) refers to bands by name.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Every Sentinel-2 band name (B10 exists only in L1C products).
S2_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)
#: EuroSAT-MS files: 13 bands, B8A last.
EUROSAT_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A",
)
#: BigEarthNet Sentinel-2 (L2A, no B10).
BEN_S2_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)
#: Sentinel-1 dual polarisation.
S1_BANDS: tuple[str, ...] = ("VV", "VH")
RGB_BANDS: tuple[str, ...] = ("B04", "B03", "B02")

OPTICAL_UNITS = "reflectance_x1e4"
SAR_UNITS = ("db", "linear")

# Band orders assumed for files without band descriptions, by band count (optical sources).
_DEFAULT_OPTICAL_ORDER: dict[int, tuple[str, ...]] = {
    13: EUROSAT_BANDS,
    12: BEN_S2_BANDS,
    4: ("B02", "B03", "B04", "B08"),
    3: RGB_BANDS,
}


def default_band_names(count: int, source: str) -> tuple[str, ...] | None:
    """Band names assumed for a file of ``count`` bands without descriptions, or None if ambiguous."""
    if source == "s1":
        return S1_BANDS if count == 2 else None
    return _DEFAULT_OPTICAL_ORDER.get(count)


def normalise_band_name(name: str) -> str:
    """Canonical spelling of a band name: ``b8`` -> ``B08``, ``b8a`` -> ``B8A``, ``vv`` -> ``VV``."""
    n = name.strip().upper()
    if n in S1_BANDS or n in S2_BANDS:
        return n
    if n.startswith("B") and n[1:].isdigit():
        return f"B{int(n[1:]):02d}"
    return n


def band_indices(wanted: Sequence[str], have: Sequence[str]) -> list[int] | None:
    """Indices of ``wanted`` bands in ``have`` (None if any is missing)."""
    pos = {b: i for i, b in enumerate(have)}
    try:
        return [pos[b] for b in wanted]
    except KeyError:
        return None
