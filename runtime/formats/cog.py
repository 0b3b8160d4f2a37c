"""GIS-ready outputs: Cloud-Optimized GeoTIFFs with colour table, class names, overviews; a quicklook PNG.

Why: a class map is opened in QGIS/ArcGIS or served from object storage. A plain strip GeoTIFF with a
custom ``classes`` tag shows grey values 0..K and no legend, and a client must read it whole. So:

* every raster goes through GDAL's COG driver (rasterio, no extra package): internal 256x256 tiles,
  DEFLATE, overviews down to one tile - built with ``MODE`` for class maps (an average of class
  indices is a class that is not there) and ``AVERAGE`` for probabilities and confidence.
* the class map carries a colour table (nodata transparent), ``class`` as its band description and the
  class names in band tags (``class_names``, JSON, read by ``rasterio``'s ``tags(1)``), plus a GDAL PAM
  sidecar ``<map>.tif.aux.xml`` holding ``CategoryNames`` and a thematic raster attribute table
  (Value, Class, Red, Green, Blue, Alpha) - where GDAL and QGIS read category names and legends; a
  GeoTIFF cannot hold them inside the file.
* probability bands are described by their class names; the confidence raster is the blend's top
  probability.

Writing: the scene loop writes an intermediate tiled GeoTIFF window by window (a COG cannot be written
incrementally: its overviews precede the full-resolution data); :func:`cog_output` then copies it to a
COG under a temporary name beside the target, reads every block back, and renames it over the target.
Temporary files are named ``.<target name>.<random>.tmp.tif`` (:func:`stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from cmkd_edge.errors import DataError
from cmkd_edge.fsutil import _mode_for, atomic_write_bytes, atomic_write_text

#: class colours (RGB), by class index; a 20-colour qualitative table, then a deterministic spread
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (44, 160, 44), (255, 127, 14), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (152, 223, 138),
    (255, 187, 120), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (199, 199, 199),
    (219, 219, 141), (158, 218, 229))


def class_colour(k: int) -> tuple[int, int, int]:
    """RGB of class ``k``: the palette, then golden-ratio hues (distinct, and the same on every run)."""
    if k < len(PALETTE):
        return PALETTE[k]
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.65, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def colour_table(n_classes: int, nodata: int) -> dict[int, tuple[int, int, int, int]]:
    """A GDAL colour table: one opaque colour per class, nodata transparent."""
    table = {k: (*class_colour(k), 255) for k in range(n_classes)}
    table[nodata] = (0, 0, 0, 0)
    return table


def stale_temporaries(target: Path) -> list[Path]:
    """Temporary files a killed writer of ``target`` (or its sidecars) may have left beside it."""
    return sorted(target.parent.glob(f".{target.name}.*.tmp*"))  # also ".<name>.aux.xml.<random>.tmp"


@contextlib.contextmanager
def cog_output(path: Path, resampling: str, **profile: Any) -> Iterator[Any]:
    """Yield an open intermediate GeoTIFF writer; on success it becomes the COG ``path``, atomically.

    Args:
        path: the final COG.
        resampling: overview resampling, ``MODE`` (classes) or ``AVERAGE`` (probabilities).
        profile: rasterio profile of the raster (height, width, count, dtype, crs, transform, nodata).

    Raises:
        DataError: the COG could not be written completely (e.g. a full disk); ``path`` is unchanged.
    """
    import rasterio
    import rasterio.shutil
    from rasterio._err import CPLE_BaseError  # why private: rasterio.errors does not re-export the base

    path.parent.mkdir(parents=True, exist_ok=True)
    temps = []
    for kind in ("part", "cog"):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{kind}.", suffix=".tmp.tif", dir=path.parent)
        os.close(fd)
        temps.append(Path(tmp))
    part, cog = temps
    try:
        # why ZSTD level 1 / no predictor: the intermediate is read once, speed matters, size does not
        with rasterio.open(part, "w", driver="GTiff", tiled=True, blockxsize=256, blockysize=256,
                           compress="zstd", zstd_level=1, BIGTIFF="IF_SAFER", **profile) as dst:
            yield dst
        _verify_written(part, path)  # GDAL only prints write errors (a full disk): read it back first
        try:
            rasterio.shutil.copy(part, cog, driver="COG", BLOCKSIZE=256, COMPRESS="DEFLATE", OVERVIEWS="AUTO",
                                 RESAMPLING=resampling, BIGTIFF="IF_SAFER")
        except (rasterio.errors.RasterioError, CPLE_BaseError, OSError) as exc:
            raise _write_failed(cog, path, exc) from exc
        os.unlink(part)
        _verify_written(cog, path)
        os.chmod(cog, _mode_for(path))  # mkstemp made it 0600; give it a normal file's mode
        os.replace(cog, path)
    except BaseException:
        for t in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(t)
        raise


def _verify_written(tmp: Path, path: Path) -> None:
    """Read every block of a just-written GeoTIFF back before it may replace ``path``.

    Why: GDAL reports a failed write (e.g. a full disk) only on stderr and rasterio's ``close``
    does not raise, so without this a truncated file would silently replace the previous output.
    """
    import rasterio

    try:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        with rasterio.open(tmp) as src:
            for _, window in src.block_windows(1):
                src.read(window=window)
    except (rasterio.errors.RasterioIOError, OSError) as exc:
        raise _write_failed(tmp, path, exc) from exc


def _write_failed(tmp: Path, path: Path, exc: BaseException) -> DataError:
    """The one error for an output GDAL could not write (most often a full disk), naming the target."""
    free = shutil.disk_usage(tmp.parent).free
    why = f"{free} bytes free on that disk" if free < (1 << 20) else \
        (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return DataError(f"writing {path} failed: the output could not be written completely ({why})",
                     "free some space or write elsewhere; the previous file (if any) is unchanged")


def describe_class_map(dst: Any, class_names: tuple[str, ...], nodata: int) -> None:
    """Colour table (classes < 255 only: a palette is 8-bit), band description and class-name tags."""
    if len(class_names) < 255:
        dst.write_colormap(1, colour_table(len(class_names), nodata))
    dst.set_band_description(1, "class")
    dst.update_tags(1, class_names=json.dumps(list(class_names)))


def write_category_sidecar(path: Path, class_names: tuple[str, ...], nodata: int) -> Path:
    """Write ``<path>.aux.xml``: category names and a thematic raster attribute table for GDAL/QGIS."""
    fields = [("Value", 0, 5), ("Class", 2, 2), ("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8), ("Alpha", 0, 9)]
    defs = "".join(f'<FieldDefn index="{i}"><Name>{n}</Name><Type>{t}</Type><Usage>{u}</Usage></FieldDefn>'
                   for i, (n, t, u) in enumerate(fields))
    rows = "".join(f'<Row index="{k}"><F>{k}</F><F>{escape(name)}</F>'
                   + "".join(f"<F>{c}</F>" for c in (*class_colour(k), 255)) + "</Row>"
                   for k, name in enumerate(class_names))
    cats = "".join(f"<Category>{escape(n)}</Category>" for n in class_names)
    xml = (f'<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>{cats}</CategoryNames>\n'
           f'    <GDALRasterAttributeTable tableType="thematic">{defs}{rows}</GDALRasterAttributeTable>\n'
           f'  </PAMRasterBand>\n</PAMDataset>\n')
    side = path.with_name(path.name + ".aux.xml")
    atomic_write_text(side, xml)
    return side


def write_quicklook(class_map: Path, png: Path, class_names: tuple[str, ...], title: str,
                    max_side: int = 1024) -> Path:
    """A PNG of the class map (read from its overviews, at most ``max_side`` pixels) with a legend.

    Needs matplotlib (the ``[plot]`` extra); the CLI checks for it before classifying.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from rasterio.enums import Resampling

    with rasterio.open(class_map) as src:
        scale = max(1.0, max(src.height, src.width) / max_side)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        cls = src.read(1, out_shape=shape, resampling=Resampling.mode)
        nodata = src.nodata
    k = len(class_names)
    img = np.ma.masked_where((cls == nodata) | (cls >= k), cls)
    cmap = ListedColormap([np.array(class_colour(i)) / 255 for i in range(k)])
    fig, ax = plt.subplots(figsize=(8, 8 * shape[0] / shape[1] + 0.5), dpi=100)
    ax.imshow(img, cmap=cmap, vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    present = sorted(set(np.unique(img.compressed()).tolist()))
    handles = [Patch(color=np.array(class_colour(i)) / 255, label=class_names[i]) for i in present]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(png, buf.getvalue())
    return png


__all__ = ["PALETTE", "class_colour", "cog_output", "colour_table", "describe_class_map", "stale_temporaries",
           "write_category_sidecar", "write_quicklook"]
