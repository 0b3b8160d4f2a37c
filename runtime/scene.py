"""Whole-scene classification: tile a GeoTIFF into model-sized patches, write a class-map GeoTIFF.

Tiling rule (``axis_tiles`` per axis, ``tile_grid`` = their product), for a scene axis of ``length``
pixels, a patch of ``patch`` pixels and a ``stride`` with ``1 <= stride <= patch`` (default
``stride = patch``):

1. Patch origins are ``0, stride, 2*stride, ...`` while ``origin + patch <= length``; if the last of
   these does not reach the end, one more patch is added at ``length - patch`` (flush with the
   right/bottom edge, overlapping its neighbour). So every pixel lies in at least one patch.
2. Every pixel is painted with the class of exactly one patch: the one whose centre is nearest along
   each axis, ties going to the earlier patch. In integers: with origins ``o_0 < ... < o_n``, patch
   ``i`` paints ``[b_{i-1}, b_i)`` where ``b_i = (o_i + o_{i+1} + patch + 1) // 2``, ``b_{-1} = 0`` and
   ``b_n = length``. These cells partition the axis and each lies inside its own patch. With the
   default stride this is simply "each patch paints itself", except the edge patch, which shares
   its overlap with its neighbour at the midpoint.
3. A scene axis shorter than the patch cannot be classified (InputMismatchError).

Nodata: a pixel is invalid when any band is NaN/Inf or equals the nodata value (the GeoTIFF's, else
the manifest's). Under ``nodata_policy="mask"`` a patch with any invalid pixel outputs nodata on its
whole cell (class 255, probabilities NaN or 255); since a cell lies inside its patch, every invalid
input pixel is nodata in the output. Under ``"reject"`` the first such patch raises.

Memory stays bounded whatever the scene size: patches are processed one row of patches at a time,
``batch`` patches per read (a window of ``patch`` rows x about ``batch * stride`` columns x bands), and
each batch's cells are written at once; GDAL's block cache is capped (``gdal_cache_mb``) so caching
of a wide scene cannot grow the process either. (A tiled input is read efficiently when the cache
holds one row of its tiles: ``bands x tile height x width x itemsize``; raise ``gdal_cache_mb`` for
very wide tiled scenes, otherwise blocks are re-read, which costs time, not memory.)
Outputs are written to a temporary file beside ``out`` and renamed when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmkd_edge.errors import ConfigError, DataError, InputMismatchError
from cmkd_edge.fsutil import _mode_for

NODATA_CLASS = 255


@dataclass(frozen=True)
class Tile:
    """A patch at (row, col) of size patch, and the cell ``[r0, r1) x [c0, c1)`` it paints."""

    row: int
    col: int
    r0: int
    r1: int
    c0: int
    c1: int


def axis_tiles(length: int, patch: int, stride: int | None = None) -> list[tuple[int, int, int]]:
    """(origin, start, stop) per patch along one axis; ``[start, stop)`` is the painted cell."""
    stride = patch if stride is None else stride
    if patch < 1 or not 1 <= stride <= patch:
        raise ConfigError(f"stride {stride} must be between 1 and the patch size {patch}")
    if length < patch:
        raise InputMismatchError(f"scene side of {length} pixels is smaller than the model's "
                                 f"{patch}-pixel input")
    origins = list(range(0, length - patch + 1, stride))
    if origins[-1] + patch < length:
        origins.append(length - patch)
    bounds = [(a + b + patch + 1) // 2 for a, b in zip(origins, origins[1:], strict=False)]
    starts, stops = [0, *bounds], [*bounds, length]
    return list(zip(origins, starts, stops, strict=True))


def tile_grid(height: int, width: int, patch: int | tuple[int, int],
              stride: int | tuple[int, int] | None = None) -> list[Tile]:
    """Every patch of a ``height`` x ``width`` scene, row-major, with its painted cell."""
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    sh, sw = (stride, stride) if stride is None or isinstance(stride, int) else stride
    rows, cols = axis_tiles(height, ph, sh), axis_tiles(width, pw, sw)
    return [Tile(r, c, r0, r1, c0, c1) for r, r0, r1 in rows for c, c0, c1 in cols]


@dataclass(frozen=True)
class SceneResult:
    out: Path
    probabilities: Path | None
    patches: int
    masked: int
    seconds: float
    height: int
    width: int

    @property
    def pixels_per_s(self) -> float:
        return self.height * self.width / self.seconds if self.seconds else float("nan")


@contextlib.contextmanager
def _atomic_raster(path: Path, **profile: object) -> Iterator[object]:
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.tif", dir=path.parent)
    os.close(fd)
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            yield dst
        _verify_written(Path(tmp), path)
        os.chmod(tmp, _mode_for(path))  # mkstemp made it 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
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
        free = shutil.disk_usage(tmp.parent).free
        why = f"{free} bytes free on that disk" if free < (1 << 20) else \
            (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"writing {path} failed: the output could not be written completely ({why})",
                        "free some space or write elsewhere; the previous file (if any) is unchanged"
                        ) from exc


def _band_indexes(src: object, band_names: tuple[str, ...], path: Path) -> list[int]:
    """1-based band indexes in the model's order: by band description when all are named."""
    count, desc = src.count, src.descriptions  # type: ignore[attr-defined]
    if all(desc) and set(band_names) <= set(desc):
        return [desc.index(n) + 1 for n in band_names]
    if count != len(band_names):
        raise InputMismatchError(f"{path.name} has {count} bands, the model expects {len(band_names)} "
                                 f"({','.join(band_names)})")
    return list(range(1, count + 1))


def classify_scene(classifier: object, path: str | os.PathLike[str], out: str | os.PathLike[str],
                   stride: int | None = None, batch: int = 32, probabilities: bool | str = False,
                   nodata_policy: str = "mask", prob_dtype: str = "float32",
                   progress: bool = True, gdal_cache_mb: int = 64) -> SceneResult:
    """Classify a whole GeoTIFF scene patch by patch; write a class map (and probabilities).

    Args:
        classifier: an open :class:`~cmkd_edge.runtime.classifier.Classifier`.
        path: input GeoTIFF with the model's bands (matched by band description, else by order).
        out: class-map GeoTIFF (uint8, or uint16 beyond 255 classes; nodata 255 / 65535), with the
            input's CRS and transform.
        stride: patch stride in pixels (default: the patch size; see the tiling rule above).
        batch: patches per inference call.
        probabilities: True (write ``<out stem>_probs.tif``) or a path: one band per class.
        prob_dtype: "float32" (nodata NaN) or "uint8" (probability * 254, nodata 255).
        gdal_cache_mb: GDAL block cache for this call (GDAL_CACHEMAX). GDAL's default is 5 % of RAM,
            which a wide scene would fill and so grow the process; this bounds it.

    Raises:
        DataError: unreadable input. InputMismatchError: wrong bands / too small / rejected nodata.
    """
    import rasterio

    with rasterio.Env(GDAL_CACHEMAX=int(gdal_cache_mb) << 20):
        return _classify_scene(classifier, Path(path), Path(out), stride, batch, probabilities,
                               nodata_policy, prob_dtype, progress)


def _classify_scene(clf: Any, path: Path, out: Path, stride: int | None, batch: int,
                    probabilities: bool | str, nodata_policy: str, prob_dtype: str,
                    progress: bool) -> SceneResult:
    import rasterio
    from rasterio.windows import Window

    if prob_dtype not in ("float32", "uint8"):
        raise ConfigError(f"prob_dtype {prob_dtype!r}", "use float32 or uint8")
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    spec, names = clf.manifest.input, clf.class_names  # type: ignore[attr-defined]
    ph, pw = int(spec.shape[2]), int(spec.shape[3])
    try:
        src = rasterio.open(path)
    except (rasterio.errors.RasterioIOError, OSError) as exc:
        raise DataError(f"cannot read scene {path} ({exc})") from exc
    with src:
        indexes = _band_indexes(src, spec.band_names, path)
        height, width = src.height, src.width
        rows, cols = axis_tiles(height, ph, stride), axis_tiles(width, pw, stride)
        nodata = src.nodata if src.nodata is not None else spec.nodata
        cls_dtype, cls_nodata = ("uint8", NODATA_CLASS) if len(names) < 255 else ("uint16", 65535)
        base = {"driver": "GTiff", "height": height, "width": width, "crs": src.crs,
                "transform": src.transform, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
        prob_path = None
        if probabilities:
            prob_path = Path(probabilities) if isinstance(probabilities, (str, os.PathLike)) else \
                out.with_name(out.stem + "_probs.tif")
        prob_nodata = float("nan") if prob_dtype == "float32" else 255
        total, masked, t0 = len(rows) * len(cols), 0, time.perf_counter()
        with contextlib.ExitStack() as stack:
            dst = stack.enter_context(_atomic_raster(out, count=1, dtype=cls_dtype, nodata=cls_nodata, **base))
            pdst = stack.enter_context(_atomic_raster(
                prob_path, count=len(names), dtype=prob_dtype, nodata=prob_nodata, **base)) if prob_path else None
            bar = stack.enter_context(_progress(total, path.name, progress))
            for r, r0, r1 in rows:
                for k in range(0, len(cols), batch):
                    chunk = cols[k:k + batch]
                    left, right = chunk[0][0], chunk[-1][0] + pw
                    try:
                        data = src.read(indexes, window=Window(left, r, right - left, ph))
                    except rasterio.errors.RasterioIOError as exc:
                        raise DataError(f"cannot read rows {r}-{r + ph} of {path} ({exc})") from exc
                    patches = np.stack([data[:, :, c - left:c - left + pw] for c, _, _ in chunk])
                    probs = clf.predict(patches, nodata_policy=nodata_policy, nodata=nodata)  # type: ignore[attr-defined]
                    bad = np.isnan(probs).any(axis=1)
                    masked += int(bad.sum())
                    cls = np.where(bad, cls_nodata, probs.argmax(axis=1))
                    c_lo, c_hi = chunk[0][1], chunk[-1][2]
                    cell = Window(c_lo, r0, c_hi - c_lo, r1 - r0)
                    cmap = np.empty((r1 - r0, c_hi - c_lo), dtype=cls_dtype)
                    for i, (_, c0, c1) in enumerate(chunk):
                        cmap[:, c0 - c_lo:c1 - c_lo] = cls[i]
                    dst.write(cmap, 1, window=cell)
                    if pdst is not None:
                        p = probs if prob_dtype == "float32" else np.where(
                            np.isnan(probs), 255, np.rint(np.nan_to_num(probs) * 254)).astype(np.uint8)
                        pmap = np.empty((len(names), r1 - r0, c_hi - c_lo), dtype=prob_dtype)
                        for i, (_, c0, c1) in enumerate(chunk):
                            pmap[:, :, c0 - c_lo:c1 - c_lo] = p[i][:, None, None]
                        pdst.write(pmap, window=cell)
                    bar(len(chunk))
            for d in (dst, pdst):
                if d is not None:
                    d.update_tags(classes=",".join(names), source=path.name, tiling=f"patch={ph}x{pw} "
                                  f"stride={stride or 'patch'}", nodata_policy=nodata_policy)
    return SceneResult(out, prob_path, total, masked, time.perf_counter() - t0, height, width)


@contextlib.contextmanager
def _progress(total: int, label: str, enabled: bool) -> Iterator[object]:
    """A rich progress bar with patches/s on stderr; a no-op callable when disabled."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class _Speed(ProgressColumn):
        def render(self, task: object) -> Text:
            speed = task.speed  # type: ignore[attr-defined]
            return Text(f"{speed:8.1f} patches/s" if speed else "    -- patches/s")

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Speed(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=False) as prog:
        task = prog.add_task(f"classify {label}", total=total)
        yield lambda n: prog.advance(task, n)
