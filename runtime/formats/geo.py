"""rasterio (GDAL) on demand: GeoTIFF patches and scenes need it, chips and arrays do not.

Why an extra: rasterio's wheels carry GDAL (111 MB of a 291 MiB aarch64 base install), and a
radar-chip device never reads a GeoTIFF. The base install classifies chips and .npy patches;
``pip install 'cmkd-edge[geo]'`` adds GeoTIFF patches, scenes, STAC items and COG output.
"""

from __future__ import annotations

from typing import Any

from cmkd_edge.errors import BackendUnavailableError


def require_rasterio(what: str) -> Any:
    """The rasterio module, or a one-line error naming ``what`` needed it and the extra to install."""
    try:
        import rasterio
    except ImportError:
        raise BackendUnavailableError(f"{what} needs rasterio, which is not installed (the [geo] extra)",
                                      "pip install 'cmkd-edge[geo]'") from None
    return rasterio
