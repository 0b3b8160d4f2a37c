"""Scene sources: one windowed, model-ordered view over a stacked raster or a product of per-band files.

Why: real products are not pre-stacked. Sentinel-2 ships one file per band at 10, 20 and 60 m (a SAFE
folder of JP2s, or a STAC item whose assets are per-band Cloud-Optimized GeoTIFFs) and Sentinel-1 one
file per polarisation. Stacking them first means writing (and holding) a 13-band 10 m copy of every
scene; instead a :class:`BandFileSource` reads each band's window on demand, and a band on a coarser
or shifted grid is resampled to the model's grid on the fly through a rasterio ``WarpedVRT``
(bilinear for reflectance and backscatter, nearest for masks). Only the window being classified is
ever in memory.

Which source a path gives (:func:`open_source`):

* a ``.json`` file: a STAC Item (read with pystac, the ``[stac]`` extra); each model band is the asset
  whose ``eo:bands`` / ``bands`` entry has that ``name`` (``B4`` = ``B04``) or the Sentinel
  ``common_name`` of it (``red`` = B04, ``nir08`` = B8A, ...), else whose ``sar:polarizations`` is
  that one polarisation, else whose asset key is the band name. An asset with the role ``data-mask``
  is a validity mask (0 = no data), resampled with nearest.
* a directory: a folder of per-band files (``*.tif``, ``*.tiff``, ``*.jp2``, searched recursively, so a
  SAFE folder works); a file belongs to band ``B04`` when its name has the token ``B04`` (or ``B4``)
  between separators, to ``VV`` when it has ``vv``; when several files hold one band (L2A's R10m/R20m/
  R60m) the finest is used. A file with the token ``mask`` is the validity mask.
* anything else: a stacked raster, bands matched by description when all are named, else by order.

The model's grid is the finest grid among the model's band files (its CRS, transform and size).
Band-file values are returned as float32 with each file's nodata (and masked pixels) as NaN, which
validation treats as invalid; a stacked raster is returned in its own dtype with its nodata value.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmkd_edge.errors import BackendUnavailableError, DataError, InputMismatchError

#: STAC / Sentinel common names -> the band names bundles use (Sentinel-2 and Sentinel-1)
COMMON_NAMES: dict[str, str] = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge071": "B05",
    "rededge075": "B06", "rededge078": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09",
    "cirrus": "B10", "swir16": "B11", "swir22": "B12", "vv": "VV", "vh": "VH", "hh": "HH", "hv": "HV",
}
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")
_BAND_TOKEN = re.compile(r"(?:^|[_\-.\s])(B0?\d{1,2}A?|VV|VH|HH|HV|mask)(?=$|[_\-.\s])", re.IGNORECASE)


def normalize_band(name: str) -> str:
    """``b4`` / ``B4`` / ``B04`` -> ``B04``; ``b8a`` -> ``B8A``; ``vv`` -> ``VV``; others upper-cased."""
    m = re.fullmatch(r"[Bb]0?(\d{1,2})([Aa]?)", name.strip())
    if m:
        return f"B{int(m.group(1)):02d}{m.group(2).upper()}" if not m.group(2) else f"B{int(m.group(1))}A"
    return name.strip().upper()


@dataclass(frozen=True)
class BandFile:
    """One model band: a raster file (local path or GDAL-readable href) and the band index in it."""

    href: str
    index: int = 1


class StackedSource:
    """A multi-band raster holding the model's bands (the pre-stacked case)."""

    def __init__(self, path: Path, band_names: tuple[str, ...]) -> None:
        import rasterio

        try:
            self._src = rasterio.open(path)
        except (rasterio.errors.RasterioIOError, OSError) as exc:
            raise DataError(f"cannot read scene {path} ({exc})") from exc
        try:
            self._indexes = band_indexes(self._src, band_names, path)
        except BaseException:
            self._src.close()
            raise
        self.path, self.name = path, path.name
        self.height, self.width = self._src.height, self._src.width
        self.crs, self.transform, self.nodata = self._src.crs, self._src.transform, self._src.nodata

    def read(self, window: Any) -> np.ndarray:
        """(C, h, w) in the model's band order, the file's dtype."""
        import rasterio

        try:
            return self._src.read(self._indexes, window=window)
        except rasterio.errors.RasterioIOError as exc:
            raise DataError(f"cannot read {window} of {self.path} ({exc})") from exc

    def close(self) -> None:
        self._src.close()


class BandFileSource:
    """Per-band files on possibly different grids, read window by window on the finest one."""

    def __init__(self, name: str, bands: dict[str, BandFile], band_names: tuple[str, ...],
                 mask: BandFile | None = None) -> None:
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        self.name, self.path = name, Path(name)
        self._stack = contextlib.ExitStack()
        try:
            opened: dict[str, Any] = {}
            for href in dict.fromkeys([*(bands[b].href for b in band_names), *([mask.href] if mask else [])]):
                try:
                    opened[href] = self._stack.enter_context(_quiet_open(href))
                except (rasterio.errors.RasterioIOError, OSError) as exc:
                    raise DataError(f"cannot read band file {href} of {name} ({exc})") from exc
            ref = min((opened[bands[b].href] for b in band_names), key=lambda s: abs(s.res[0] * s.res[1]))
            self.height, self.width, self.crs, self.transform = ref.height, ref.width, ref.crs, ref.transform
            self.nodata = None  # NaN marks invalid pixels (each file's nodata, the mask)

            def on_grid(href: str, resampling: Resampling) -> Any:
                src = opened[href]
                if (src.crs, src.transform, src.shape) == (ref.crs, ref.transform, ref.shape):
                    return src
                return self._stack.enter_context(WarpedVRT(
                    src, crs=ref.crs, transform=ref.transform, width=ref.width, height=ref.height,
                    resampling=resampling))

            # why bilinear: reflectance / backscatter are continuous; nearest would show 20/60 m blocks
            self._bands = [(on_grid(bands[b].href, Resampling.bilinear), bands[b].index, opened[bands[b].href].nodata)
                           for b in band_names]
            self._mask = (on_grid(mask.href, Resampling.nearest), mask.index) if mask else None
        except BaseException:
            self._stack.close()
            raise

    def read(self, window: Any) -> np.ndarray:
        """(C, h, w) float32 in the model's band order; nodata and masked pixels are NaN."""
        import rasterio

        h, w = int(window.height), int(window.width)
        out = np.empty((len(self._bands), h, w), np.float32)
        try:
            for i, (src, index, nodata) in enumerate(self._bands):
                band = src.read(index, window=window)
                out[i] = band
                if nodata is not None and not np.isnan(nodata):
                    out[i][band == nodata] = np.nan
            if self._mask is not None:
                src, index = self._mask
                out[:, src.read(index, window=window) == 0] = np.nan
        except rasterio.errors.RasterioIOError as exc:
            raise DataError(f"cannot read {window} of {self.name} ({exc})") from exc
        return out

    def close(self) -> None:
        self._stack.close()


def band_indexes(src: object, band_names: tuple[str, ...], path: Path) -> list[int]:
    """1-based band indexes in the model's order: by band description when all are named."""
    count, desc = src.count, src.descriptions  # type: ignore[attr-defined]
    if all(desc) and set(band_names) <= set(desc):
        return [desc.index(n) + 1 for n in band_names]
    if count != len(band_names):
        raise InputMismatchError(f"{path.name} has {count} bands, the model expects {len(band_names)} "
                                 f"({','.join(band_names)})")
    return list(range(1, count + 1))


def _quiet_open(href: str) -> Any:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(href)


# -- finding the bands ---------------------------------------------------------------------------------
def _asset_band_names(asset: dict[str, Any]) -> list[tuple[str, ...]]:
    """Per band of an asset, the names it may be matched by (name, common name -> band, polarisation)."""
    entries = asset.get("eo:bands") or asset.get("bands") or []
    out = []
    for e in entries:
        names = [normalize_band(str(e["name"]))] if e.get("name") else []
        common = e.get("common_name") or e.get("eo:common_name")
        if common and str(common).lower() in COMMON_NAMES:
            names.append(COMMON_NAMES[str(common).lower()])
        out.append(tuple(names))
    pols = asset.get("sar:polarizations") or []
    if not out and len(pols) == 1:
        out.append((normalize_band(str(pols[0])),))
    return out


def stac_bands(item_path: Path, band_names: tuple[str, ...]) -> tuple[str, dict[str, BandFile], BandFile | None]:
    """(item id, model band -> band file, validity mask) of a local STAC Item JSON.

    Raises:
        BackendUnavailableError: pystac is not installed (the ``[stac]`` extra).
        DataError: not a readable STAC Item. InputMismatchError: a model band has no asset.
    """
    try:
        import pystac
    except ImportError as exc:  # an optional extra: a device classifying stacked GeoTIFFs needs no STAC
        raise BackendUnavailableError(f"reading the STAC item {item_path.name} needs pystac, which is not "
                                      "installed (the [stac] extra)", "pip install 'cmkd-edge[stac]'") from exc

    try:
        item = pystac.Item.from_file(str(item_path))
    except Exception as exc:  # pystac raises json, key, type and its own STACError alike
        raise DataError(f"{item_path} is not a readable STAC Item ({type(exc).__name__}: {exc})",
                        "give a STAC Item JSON (type Feature) whose assets are per-band rasters") from exc
    found: dict[str, BandFile] = {}
    mask = None
    for key, asset in item.assets.items():
        d = asset.to_dict()
        href = asset.get_absolute_href() or asset.href
        if "data-mask" in (asset.roles or []):
            mask = BandFile(href)
            continue
        per_band = _asset_band_names(d)
        if not per_band and normalize_band(key) in band_names:
            per_band = [(normalize_band(key),)]
        for i, names in enumerate(per_band, start=1):
            for n in names:
                if n in band_names and n not in found:
                    found[n] = BandFile(href, i)
    missing = [b for b in band_names if b not in found]
    if missing:
        raise InputMismatchError(
            f"STAC item {item.id} ({item_path.name}) has no asset for band(s) {','.join(missing)} the model reads",
            "assets are matched by eo:bands name or common_name, sar:polarizations, or asset key")
    return item.id, found, mask


def folder_bands(folder: Path, band_names: tuple[str, ...]) -> tuple[dict[str, BandFile], BandFile | None]:
    """(model band -> file, validity mask) of a folder of per-band files; finest file per band."""
    cands: dict[str, list[Path]] = {}
    for p in sorted(folder.rglob("*")):
        # why MSK_: a SAFE's QI_DATA holds per-band quality masks (MSK_DETFOO_B04.jp2) named by band too
        if p.suffix.lower() not in RASTER_SUFFIXES or p.name.startswith((".", "MSK_")):
            continue
        for tok in _BAND_TOKEN.findall(p.stem):
            cands.setdefault(normalize_band(tok), []).append(p)
    mask = BandFile(str(cands["MASK"][0])) if cands.get("MASK") else None
    return {b: BandFile(str(_finest(cands[b]))) for b in band_names if b in cands}, mask


def _finest(paths: list[Path]) -> Path:
    if len(paths) == 1:
        return paths[0]
    sizes = []
    for p in paths:
        with _quiet_open(str(p)) as src:
            sizes.append(abs(src.res[0] * src.res[1]))
    return paths[int(np.argmin(sizes))]


def is_band_folder(folder: Path, band_names: tuple[str, ...]) -> bool:
    """True when every model band has a file in ``folder`` (so it is one product, not a folder of scenes)."""
    return folder.is_dir() and len(folder_bands(folder, band_names)[0]) == len(band_names)


def scene_id(path: Path) -> str:
    """The name a scene's outputs are called by: a STAC item's id, a folder's name, a file's stem."""
    if path.suffix.lower() == ".json":
        import json

        try:
            return str(json.loads(path.read_text(encoding="utf-8"))["id"])
        except (OSError, ValueError, KeyError, TypeError):
            return path.stem
    return path.name.removesuffix(".SAFE") if path.is_dir() else path.stem


def open_source(path: Path, band_names: tuple[str, ...]) -> StackedSource | BandFileSource:
    """The scene source for ``path`` (see the module docstring). Close it after use.

    Raises:
        DataError: missing or unreadable. InputMismatchError: a model band is missing.
        BackendUnavailableError: rasterio (the [geo] extra) is not installed.
    """
    from .geo import require_rasterio

    if not path.exists():
        raise DataError(f"scene {path} does not exist")
    require_rasterio(f"reading scene {path.name}")
    if path.is_dir():
        bands, mask = folder_bands(path, band_names)
        missing = [b for b in band_names if b not in bands]
        if missing:
            raise InputMismatchError(
                f"folder {path} has no file for band(s) {','.join(missing)} the model reads",
                "name per-band files with the band token, e.g. T33UUP_B04_10m.tif or s1_VV.tif")
        return BandFileSource(scene_id(path), bands, band_names, mask)
    if path.suffix.lower() == ".json":
        sid, bands, mask = stac_bands(path, band_names)
        return BandFileSource(sid, bands, band_names, mask)
    return StackedSource(path, band_names)


__all__ = ["COMMON_NAMES", "BandFile", "BandFileSource", "StackedSource", "folder_bands", "is_band_folder",
           "normalize_band", "open_source", "scene_id", "stac_bands"]
