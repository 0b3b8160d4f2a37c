"""Build realistic per-band products for tests and benchmarks: Sentinel-2 bands at 10/20/60 m as COGs.

The pixels are real: a mosaic of EuroSAT-MS patches (13 bands, 10 m) from ``../shared/data``. Each band
is written as its own Cloud-Optimized GeoTIFF at its Sentinel-2 resolution (20 and 60 m bands are
block averages of the 10 m mosaic, as a coarser detector integrates), named the way L2A/COG products
name them (``<tile>_<date>_B04_10m.tif``), and a STAC Item (pystac, eo extension fields) points at
them with relative hrefs. Sentinel-1: VV/VH backscatter files the same way.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

EUROSAT_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
RESOLUTION = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20, "B8A": 20,
              "B11": 20, "B12": 20, "B01": 60, "B09": 60, "B10": 60}
COMMON = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge071",
          "B06": "rededge075", "B07": "rededge078", "B08": "nir", "B8A": "nir08", "B09": "nir09",
          "B10": "cirrus", "B11": "swir16", "B12": "swir22"}
ORIGIN = (500000.0, 5600000.0)


def eurosat_mosaic(data_root: Path, tiles: int = 3, seed: int = 0) -> np.ndarray:
    """(13, 64*tiles, 64*tiles) uint16: ``tiles x tiles`` real EuroSAT patches of mixed classes."""
    import rasterio

    rows = list(csv.DictReader(open(data_root / "labels.csv", encoding="utf-8")))
    rng = np.random.default_rng(seed)
    pick = [rows[i] for i in rng.choice(len(rows), tiles * tiles, replace=False)]
    out = np.zeros((13, 64 * tiles, 64 * tiles), np.uint16)
    for k, row in enumerate(pick):
        with rasterio.open(data_root / row["file"]) as src:
            r, c = divmod(k, tiles)
            out[:, r * 64:(r + 1) * 64, c * 64:(c + 1) * 64] = src.read()
    return out


def _write(path: Path, data: np.ndarray, res: float, crs: str, nodata: float | None = None) -> Path:
    import rasterio

    transform = rasterio.Affine(res, 0.0, ORIGIN[0], 0.0, -res, ORIGIN[1])
    with rasterio.open(path, "w", driver="COG", height=data.shape[-2], width=data.shape[-1], count=1,
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata, BLOCKSIZE=64) as dst:
        dst.write(data if data.ndim == 3 else data[None])
    return path


def block_mean(band: np.ndarray, f: int) -> np.ndarray:
    """Average ``f x f`` blocks (the scene side must be a multiple of ``f``)."""
    h, w = band.shape
    m = band.reshape(h // f, f, w // f, f).astype(np.float64).mean(axis=(1, 3))
    return (m.round() if np.issubdtype(band.dtype, np.integer) else m).astype(band.dtype)


def write_s2_bands(folder: Path, mosaic: np.ndarray, tile: str = "T32ULU_20260601",
                   crs: str = "EPSG:32632") -> dict[str, Path]:
    """One COG per band at 10/20/60 m in ``folder``; band name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, b in enumerate(EUROSAT_ORDER):
        res = RESOLUTION[b]
        out[b] = _write(folder / f"{tile}_{b}_{res}m.tif", block_mean(mosaic[i], res // 10), res, crs)
    return out


def write_stac_item(path: Path, bands: dict[str, Path], item_id: str = "S2B_32ULU_20260601_0_L2A",
                    names: bool = True, extra_assets: dict[str, tuple[Path, list[str]]] | None = None) -> Path:
    """A STAC Item (pystac) whose assets are the per-band files; keys are the common names.

    ``names=False`` leaves out ``eo:bands`` ``name``, so bands must be matched by common name.
    """
    import datetime

    import pystac

    lon, lat = 9.0, 50.5
    item = pystac.Item(id=item_id, geometry={"type": "Point", "coordinates": [lon, lat]},
                       bbox=[lon, lat, lon, lat], datetime=datetime.datetime(2026, 6, 1, 10, 30), properties={})
    for b, p in bands.items():
        entry = {"common_name": COMMON[b], "center_wavelength": 0.5}
        if names:
            entry["name"] = b
        item.add_asset(COMMON[b], pystac.Asset(href=str(Path(p).relative_to(path.parent)),
                                               media_type=pystac.MediaType.COG, roles=["data"],
                                               extra_fields={"eo:bands": [entry], "gsd": RESOLUTION[b]}))
    for key, (p, roles) in (extra_assets or {}).items():
        item.add_asset(key, pystac.Asset(href=str(Path(p).relative_to(path.parent)),
                                         media_type=pystac.MediaType.COG, roles=roles))
    item.set_self_href(str(path))
    item.make_asset_hrefs_relative()
    item.save_object(include_self_link=False, dest_href=str(path))
    return path


def write_s1_pair(folder: Path, vv: np.ndarray, vh: np.ndarray, res_vh: int = 10,
                  crs: str = "EPSG:32632") -> dict[str, Path]:
    """``S1A_..._VV.tif`` at 10 m and ``..._VH.tif`` at ``res_vh`` m (block-averaged), float32 dB."""
    folder.mkdir(parents=True, exist_ok=True)
    return {"VV": _write(folder / "S1A_IW_GRDH_20260601_VV.tif", vv.astype(np.float32), 10, crs),
            "VH": _write(folder / "S1A_IW_GRDH_20260601_VH.tif",
                         block_mean(vh.astype(np.float32), res_vh // 10), res_vh, crs)}


def write_mask(path: Path, mask: np.ndarray, res: int, crs: str = "EPSG:32632") -> Path:
    """A uint8 validity mask (0 = no data) at ``res`` m."""
    return _write(path, mask.astype(np.uint8), res, crs)
