"""Read one raster file (GeoTIFF through rasterio, or ``.npy``) into a float32 ``(B, H, W)`` array.

Every failure a user can cause (missing file, a text file named ``.tif``, a truncated GeoTIFF, the wrong
number of bands, a complex (SLC) dtype, NaN/Inf pixels, pixels equal to the file's declared nodata
value) becomes a one-line :class:`DataError` naming the file, so a bad patch
in a folder of thousands is found from the message alone. Whole-scene windowed reads are the
runtime's job (``cmkd_edge.runtime.scene``); these readers load small patches whole.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cmkd_edge.data.bands import normalise_band_name
from cmkd_edge.errors import DataError

RASTER_SUFFIXES = (".tif", ".tiff", ".npy")

#: Band names for files without descriptions: a fixed list, or a function of the band count.
DefaultBands = Sequence[str] | Callable[[int], Sequence[str] | None] | None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _bad_bands(mask: np.ndarray, band_names: Sequence[str]) -> str:
    return ", ".join(band_names[i] if i < len(band_names) else str(i)
                     for i in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)))


def _check(arr: np.ndarray, path: Path, band_names: Sequence[str], expected: int | None,
           nodata: float | None = None) -> None:
    if expected is not None and arr.shape[0] != expected:
        raise DataError(f"{path} has {arr.shape[0]} bands, expected {expected}")
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1)
        if not finite.all():
            bad = [band_names[i] if i < len(band_names) else str(i) for i in np.flatnonzero(~finite)]
            raise DataError(f"{path} contains NaN/Inf values (bands {', '.join(bad)})")
    # why: a patch with nodata pixels would be trained on the fill value as if it were a measurement
    if nodata is not None and not np.isnan(nodata):
        hit = arr == np.float32(nodata)
        if hit.any():
            raise DataError(f"{path} has {int(hit.sum())} nodata pixels (value {nodata:g}; bands "
                            f"{_bad_bands(hit, band_names)})", "fill them or leave this patch out")


def _refuse_complex(dtype: object, path: Path) -> None:
    if np.issubdtype(np.dtype(str(dtype).replace("complex_int16", "complex64")), np.complexfloating):
        raise DataError(f"{path} holds complex values ({dtype}); expected real band values",
                        "convert complex (SLC) SAR to backscatter intensity or dB first")


def _names(count: int, described: Sequence[str | None], default: DefaultBands,
           path: Path) -> tuple[str, ...]:
    if callable(default):
        default = default(count)
    if described and all(described):
        return tuple(normalise_band_name(d) for d in described)  # type: ignore[arg-type]
    if default is not None and len(default) == count:
        return tuple(default)
    if default is not None:
        return tuple(f"band{i + 1}" for i in range(count))  # count check reports the mismatch
    raise DataError(f"{path} has {count} bands without band descriptions; cannot name them",
                    "write band descriptions (e.g. B04) into the file")


def _exists(path: Path) -> None:
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if not path.is_file():
        raise DataError(f"{path} is not a readable file (a directory or special file)")


def read_geotiff(path: str | os.PathLike[str], default_bands: DefaultBands = None,
                 expected_count: int | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Read every band of a GeoTIFF.

    Args:
        path: the file.
        default_bands: band names to use when the file has no band descriptions (the layout's
            order), or a function of the band count returning them.
        expected_count: number of bands the layout requires, or None.

    Returns:
        ``(array (B, H, W) float32, band names)``; names come from the file's band descriptions when
        every band has one, else from ``default_bands``.

    Raises:
        DataError: missing, not a GeoTIFF, truncated/corrupt, wrong band count, NaN/Inf.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    path = Path(path)
    _exists(path)
    try:
        with warnings.catch_warnings():
            # why: patches written without a geotransform are still valid training input.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                described = list(src.descriptions)
                count = src.count
                nodata = src.nodata
                for dt in set(src.dtypes):
                    _refuse_complex(dt, path)
                try:
                    arr = src.read(out_dtype="float32")
                except RasterioIOError as exc:
                    raise DataError(
                        f"{path} is truncated or corrupt ({_first_line(exc)})"
                    ) from exc
    except DataError:
        raise
    except RasterioIOError as exc:
        msg = _first_line(exc)
        if "not recognized" in msg or "not recognised" in msg:
            raise DataError(f"{path} is not a GeoTIFF (unrecognised format)") from exc
        raise DataError(f"{path} is truncated or corrupt ({msg})") from exc
    names = _names(count, described, default_bands, path)
    _check(arr, path, names, expected_count, nodata)
    return arr, names


def read_npy(path: str | os.PathLike[str], default_bands: DefaultBands = None,
             expected_count: int | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Read a ``.npy`` array ``(B, H, W)`` or ``(H, W)`` (one band); pickles are refused.

    Band names come from ``default_bands`` (a ``.npy`` has no band metadata).
    """
    path = Path(path)
    _exists(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy array ({_first_line(exc)})") from exc
    if arr.ndim == 2:
        arr = arr[None]
    _refuse_complex(arr.dtype, path)
    if arr.ndim != 3 or not (np.issubdtype(arr.dtype, np.number)):
        raise DataError(f"{path} holds a {arr.dtype} array of shape {arr.shape}, expected (B, H, W)")
    arr = arr.astype(np.float32, copy=False)
    names = _names(arr.shape[0], [], default_bands, path)
    _check(arr, path, names, expected_count)
    return arr, names


def read_raster(path: str | os.PathLike[str], default_bands: DefaultBands = None,
                expected_count: int | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Read a GeoTIFF or ``.npy`` file by its suffix (see :func:`read_geotiff`)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".tif", ".tiff"):
        return read_geotiff(path, default_bands, expected_count)
    if suffix == ".npy":
        return read_npy(path, default_bands, expected_count)
    raise DataError(f"unsupported raster file {path}", "use GeoTIFF (.tif) or .npy")
