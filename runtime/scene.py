"""Whole-scene classification: tile a scene into model-sized patches, write a class-map COG.

A scene is a stacked raster, a STAC item or a folder of per-band files (``bandsources.py``); outputs
are Cloud-Optimized GeoTIFFs with colour table and class names (``cog.py``); overlapping windows are
blended (``blend.py``) unless ``blend="none"``, which paints by the rule below.

Tiling rule (``axis_tiles`` per axis, ``tile_grid`` = their product), for a scene axis of ``length``
pixels, a patch of ``patch`` pixels and a ``stride`` with ``1 <= stride <= patch`` (default
``stride = patch``):

1. Patch origins are ``0, stride, 2*stride, ...`` while ``origin + patch <= length``; if the last of
   these does not reach the end, one more patch is added at ``length - patch`` (flush with the
   right/bottom edge, overlapping its neighbour). So every pixel lies in at least one patch.
2. (``blend="none"``) Every pixel is painted with the class of exactly one patch: the one whose centre is nearest along
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

With blending, a pixel is nodata only when every window covering it is masked (so, again, every
invalid input pixel is nodata); its neighbours take the valid windows' blend.

Memory stays bounded whatever the scene height: patches are processed one row of patches at a time,
``batch`` patches per read (a window of ``patch`` rows x about ``batch * stride`` columns x bands),
the blend of the open rows is held as ``classes x patch x width`` float32 and finished rows are
written at once; GDAL's block cache is capped (``gdal_cache_mb``) so caching
of a wide scene cannot grow the process either. (A tiled input is read efficiently when the cache
holds one row of its tiles: ``bands x tile height x width x itemsize``; raise ``gdal_cache_mb`` for
very wide tiled scenes, otherwise blocks are re-read, which costs time, not memory.)
Outputs are written to temporary files beside ``out`` and renamed when complete (``cog.cog_output``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmkd_edge.errors import ConfigError, InputMismatchError

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
    """What one scene produced: output paths, patch counts, the class histogram and the time taken."""

    out: Path
    probabilities: Path | None
    patches: int
    masked: int
    seconds: float
    height: int
    width: int
    histogram: tuple[int, ...] = ()
    nodata_pixels: int = 0
    confidence: Path | None = None
    quicklook: Path | None = None
    blend: str = "none"

    @property
    def pixels_per_s(self) -> float:
        return self.height * self.width / self.seconds if self.seconds else float("nan")


def output_paths(out: Path, probabilities: bool | str = False, confidence: bool = False,
                 quicklook: bool | str | None = None) -> dict[str, Path | None]:
    """Where a scene's outputs go: the class map ``out`` and, when asked, its siblings."""
    def sibling(flag: bool | str | None, suffix: str) -> Path | None:
        if not flag:
            return None
        return Path(flag) if isinstance(flag, (str, os.PathLike)) else out.with_name(out.stem + suffix)
    return {"classes": out, "probabilities": sibling(probabilities, "_probs.tif"),
            "confidence": sibling(confidence, "_confidence.tif"), "quicklook": sibling(quicklook, "_quicklook.png")}


def classify_scene(classifier: object, path: str | os.PathLike[str], out: str | os.PathLike[str],
                   stride: int | None = None, batch: int = 32, probabilities: bool | str = False,
                   nodata_policy: str = "mask", prob_dtype: str = "float32",
                   progress: bool = True, gdal_cache_mb: int = 64, blend: str = "hann",
                   confidence: bool | str = False, quicklook: bool | str | None = None) -> SceneResult:
    """Classify a whole scene patch by patch; write a class-map COG (and probabilities, confidence).

    Args:
        classifier: an open :class:`~cmkd_edge.runtime.classifier.Classifier`.
        path: a stacked raster with the model's bands (matched by band description, else by order), a
            STAC Item JSON or a folder of per-band files (``bandsources.open_source``).
        out: class-map Cloud-Optimized GeoTIFF (uint8, or uint16 beyond 254 classes; nodata 255 /
            65535) on the model's grid (the input's CRS and transform), with colour table, class
            names and a ``.aux.xml`` raster attribute table (``cog.py``).
        stride: patch stride in pixels (default: the patch size; see the tiling rule above).
        batch: patches per inference call.
        probabilities: True (write ``<out stem>_probs.tif``) or a path: one band per class.
        prob_dtype: "float32" (nodata NaN) or "uint8" (probability * 254, nodata 255).
        gdal_cache_mb: GDAL block cache for this call (GDAL_CACHEMAX). GDAL's default is 5 % of RAM,
            which a wide scene would fill and so grow the process; this bounds it.
        blend: "hann" / "ramp" weight overlapping windows (``blend.py``; seamless with stride < patch),
            "none" paints each pixel from its nearest patch (the tiling rule above).
        confidence: True (``<out stem>_confidence.tif``) or a path: the blend's top probability.
        quicklook: True (``<out stem>_quicklook.png``) or a path: a PNG with a legend (matplotlib).

    Raises:
        DataError: unreadable input. InputMismatchError: wrong bands / too small / rejected nodata.
    """
    from .formats.geo import require_rasterio

    rasterio = require_rasterio("classifying a scene")
    with rasterio.Env(GDAL_CACHEMAX=int(gdal_cache_mb) << 20):
        return _classify_scene(classifier, Path(path), Path(out), stride, batch, probabilities,
                               nodata_policy, prob_dtype, progress, blend, confidence, quicklook)


def _classify_scene(clf: Any, path: Path, out: Path, stride: int | None, batch: int,
                    probabilities: bool | str, nodata_policy: str, prob_dtype: str,
                    progress: bool, blend: str, confidence: bool | str,
                    quicklook: bool | str | None) -> SceneResult:
    from rasterio.windows import Window

    from .formats.bandsources import open_source
    from .formats.blend import RowAccumulator, window_1d
    from .formats.cog import cog_output, describe_class_map, write_category_sidecar, write_quicklook

    if prob_dtype not in ("float32", "uint8"):
        raise ConfigError(f"prob_dtype {prob_dtype!r}", "use float32 or uint8")
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    spec, names = clf.manifest.input, clf.class_names  # type: ignore[attr-defined]
    ph, pw = int(spec.shape[2]), int(spec.shape[3])
    wy, wx = window_1d(blend, ph), window_1d(blend, pw)  # validates blend before anything is opened
    paths = output_paths(out, probabilities, confidence, quicklook)
    with contextlib.closing(open_source(path, spec.band_names)) as src:
        height, width = src.height, src.width
        rows, cols = axis_tiles(height, ph, stride), axis_tiles(width, pw, stride)
        nodata = src.nodata if src.nodata is not None else spec.nodata
        cls_dtype, cls_nodata = ("uint8", NODATA_CLASS) if len(names) < 255 else ("uint16", 65535)
        base = {"height": height, "width": width, "crs": src.crs, "transform": src.transform}
        prob_nodata = float("nan") if prob_dtype == "float32" else 255
        tags = {"classes": ",".join(names), "source": src.name, "nodata_policy": nodata_policy,
                "tiling": f"patch={ph}x{pw} stride={stride or 'patch'} blend={blend}"}
        total, masked, t0 = len(rows) * len(cols), 0, time.perf_counter()
        hist = np.zeros(len(names), np.int64)
        w2d = np.outer(wy, wx)
        acc = RowAccumulator(len(names), ph, width)
        with contextlib.ExitStack() as stack:
            dst = stack.enter_context(cog_output(out, "MODE", count=1, dtype=cls_dtype, nodata=cls_nodata, **base))
            describe_class_map(dst, names, cls_nodata)
            pdst = cdst = None
            if paths["probabilities"]:
                pdst = stack.enter_context(cog_output(paths["probabilities"], "AVERAGE", count=len(names),
                                                      dtype=prob_dtype, nodata=prob_nodata, **base))
                for k, n in enumerate(names, start=1):
                    pdst.set_band_description(k, n)
            if paths["confidence"]:
                cdst = stack.enter_context(cog_output(paths["confidence"], "AVERAGE", count=1,
                                                      dtype=prob_dtype, nodata=prob_nodata, **base))
                cdst.set_band_description(1, "confidence")
            bar = stack.enter_context(_progress(total, src.name, progress))
            for i_row, (r, r0, r1) in enumerate(rows):
                for k in range(0, len(cols), batch):
                    chunk = cols[k:k + batch]
                    left, right = chunk[0][0], chunk[-1][0] + pw
                    data = src.read(Window(left, r, right - left, ph))
                    patches = np.stack([data[:, :, c - left:c - left + pw] for c, _, _ in chunk])
                    probs = clf.predict(patches, nodata_policy=nodata_policy, nodata=nodata)  # type: ignore[attr-defined]
                    bad = np.isnan(probs).any(axis=1)
                    masked += int(bad.sum())
                    for i, (c, c0, c1) in enumerate(chunk):
                        if bad[i]:
                            continue
                        if blend == "none":  # weight 1 on the patch's own cell only
                            acc.add(probs[i], np.ones((r1 - r0, c1 - c0), np.float32), r0, c0)
                        else:
                            acc.add(probs[i], w2d, r, c)
                    bar(len(chunk))
                until = r1 if blend == "none" else (rows[i_row + 1][0] if i_row + 1 < len(rows) else height)
                for c0, p, seen in acc.finished(until):
                    cls = p.argmax(axis=0).astype(cls_dtype)  # unseen pixels are all-NaN: set to nodata next
                    cls[~seen] = cls_nodata
                    hist += np.bincount(cls[seen].ravel(), minlength=len(names))[:len(names)]
                    win = Window(c0, acc.top, p.shape[2], until - acc.top)
                    dst.write(cls, 1, window=win)
                    for d, values in ((pdst, p), (cdst, None)):
                        if d is None:
                            continue
                        if values is None:
                            values = p.max(axis=0)[None]  # NaN where unseen (max propagates NaN)
                        if prob_dtype == "uint8":
                            values = np.where(np.isnan(values), 255, np.rint(np.nan_to_num(values) * 254)
                                              ).astype(np.uint8)
                        d.write(values.astype(prob_dtype, copy=False), window=win)
                acc.advance(until)
            for d in (dst, pdst, cdst):
                if d is not None:
                    d.update_tags(**tags)
        write_category_sidecar(out, names, cls_nodata)
        if paths["quicklook"]:
            write_quicklook(out, paths["quicklook"], names, f"{src.name} - {out.name}")
    return SceneResult(out, paths["probabilities"], total, masked, time.perf_counter() - t0, height, width,
                       tuple(int(v) for v in hist), int(height * width - hist.sum()), paths["confidence"],
                       paths["quicklook"], blend)


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
