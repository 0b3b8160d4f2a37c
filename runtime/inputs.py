"""Read what ``cmkd-edge classify`` is given and route each input: patches to ``predict``, scenes to tiling.

Why a module of its own: the CLI body should only parse and print, and the rules here are the ones a
user meets first (is this file a patch or a scene, is it laid out the way the model reads it, where
does the class map go), so they are kept in one place with their messages and tested without click.
numpy and rasterio only; never torch.

Rules:

* ``.npy``: an array (C, H, W) or (N, C, H, W), classified as it is (validation names a channels-last
  array as such).
* GeoTIFF (or any raster rasterio reads) of exactly the model's patch size: one patch, bands matched
  by description when all are named, else by order; the file's nodata value goes to validation.
* A larger raster is a scene: tiled into a class-map GeoTIFF at ``out`` (a directory when there are
  several scenes, or when ``out`` has no .tif suffix). A raster smaller than the patch is an error.
* A STAC Item ``.json`` or a folder holding a file per model band is a per-band scene
  (``bandsources.py``); any other folder is an error (``--out-dir`` takes folders of scenes).
* ``out`` with patches only is reported in :attr:`ClassifyRun.notices` (nothing is written to it).
* Radar chips, for a bundle whose input is 8-bit magnitude (``input.units == "magnitude_u8"``): a
  PNG/JPEG/TIFF chip is read by the runtime's chip reader (Pillow, :mod:`.chips`: the reader training
  used), and a folder is expanded into its chips (recursively, sorted; each named by its path
  relative to the folder, so ``--json`` has one entry per chip file). Chips are never scenes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cmkd_edge.errors import ConfigError, DataError, InputMismatchError

from .classifier import Classifier
from .contract.specs import InputSpec
from .formats.bandsources import band_indexes
from .formats.chips import CHIP_UNITS, find_chips, is_chip_path, read_chip
from .scene import classify_scene

_TIFF_DRIVERS = ("GTiff", "COG")


@dataclass
class Patch:
    """Raw patch values as read (bands in model order) and the file's own nodata value (None if unset)."""

    path: Path
    x: np.ndarray
    nodata: float | None = None
    name: str | None = None  # what results call it (default: the file name)


@dataclass
class ClassifyRun:
    """What ``classify`` did: one result dict per patch or scene, and notices for the user."""

    backend: str
    artifact: str
    precision: str
    results: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "artifact": self.artifact, "precision": self.precision,
                "results": self.results}


def _raster(path: Path) -> Any:
    """Open a raster quietly: a patch needs no georeferencing, so rasterio's warning about it is noise."""
    from .formats.geo import require_rasterio

    rasterio = require_rasterio(f"reading {path.name} (a GeoTIFF)")
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            return rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            raise DataError(f"{path} is not a readable GeoTIFF ({exc})",
                            "classify reads GeoTIFF patches and scenes, and .npy arrays") from exc


def reads_chips(spec: InputSpec) -> bool:
    """True when the model's input is a radar chip (8-bit magnitude): chip files and folders apply."""
    return spec.units == CHIP_UNITS


def expand_inputs(inputs: list[Path], spec: InputSpec) -> list[tuple[Path, str | None]]:
    """Inputs as (file, display name): for a chip model, a folder becomes its chips, each named by
    its path relative to the folder; anything else is passed on as given (and checked by
    :func:`read_input`).

    Raises:
        DataError: a folder without chips (chip models).
    """
    out: list[tuple[Path, str | None]] = []
    for p in map(Path, inputs):
        if reads_chips(spec) and p.is_dir():
            out.extend((f, f"{p.name}/{f.relative_to(p).as_posix()}") for f in find_chips([p]))
        else:
            out.append((p, None))
    return out


def read_input(path: Path, spec: InputSpec, name: str | None = None) -> Patch | Path:
    """A :class:`Patch` to classify, or ``path`` itself when it is a scene to tile.

    Raises:
        DataError: missing, a directory, unreadable or corrupt.
        InputMismatchError: wrong layout, band count, or a raster smaller than the model's patch.
    """
    from .formats.bandsources import is_band_folder

    if path.is_dir():
        if is_band_folder(path, spec.band_names):
            return path  # a product of per-band files: a scene
        raise DataError(f"input {path} is a directory, not a patch, scene file or per-band product "
                        f"(a file per band {','.join(spec.band_names)})",
                        f"give the files in it, e.g. {path}/*.tif, or --out-dir DIR to classify it as an archive")
    if not path.exists():
        raise DataError(f"input {path} does not exist")
    if path.suffix.lower() == ".json":
        from .formats.bandsources import open_source

        open_source(path, spec.band_names).close()  # a STAC item of per-band rasters: check its bands now
        return path
    if path.suffix.lower() == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path} is not a readable .npy array ({exc})") from exc
        return Patch(path, x, name=name)
    if reads_chips(spec) and is_chip_path(path):
        return Patch(path, read_chip(path), name=name)
    ph, pw = int(spec.shape[2]), int(spec.shape[3])
    with _raster(path) as src:  # checks rasterio first: chips and .npy need none
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        kind = "" if src.driver in _TIFF_DRIVERS else f" (a {src.driver} file)"
        try:
            indexes = band_indexes(src, spec.band_names, path)
        except InputMismatchError as exc:
            if not kind:
                raise
            raise InputMismatchError(exc.message.replace(path.name, path.name + kind, 1),
                                     "give the model's bands as a GeoTIFF or .npy") from exc
        if src.height < ph or src.width < pw:
            raise InputMismatchError(
                f"{path.name}{kind} is {src.height}x{src.width} pixels, smaller than the model's "
                f"{ph}x{pw} patch", f"resample or pad it to {ph}x{pw}; only larger images are tiled as scenes")
        if (src.height, src.width) != (ph, pw):
            return path
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                return Patch(path, src.read(indexes), src.nodata)
        except rasterio.errors.RasterioIOError as exc:  # header fine, pixel blocks truncated/corrupt
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DataError(f"{path} is truncated or corrupt (reading its pixels failed: {first})") from exc


def label_thresholds(clf: Classifier, threshold: float | None) -> np.ndarray | None:
    """Multi-label decision thresholds: ``threshold`` for every class, else the bundle's per-class
    ones (chosen on the validation split at export), else 0.5; None for a multi-class bundle."""
    if clf.manifest.output.activation != "sigmoid":
        return None
    k = len(clf.class_names)
    return np.full(k, threshold, np.float32) if threshold is not None else \
        clf.manifest.output.threshold_array(k)


def _patch_results(clf: Classifier, patch: Patch, nodata_policy: str,
                   threshold: float | None = None) -> list[dict[str, Any]]:
    probs = clf.predict(patch.x, nodata_policy=nodata_policy, nodata=patch.nodata)
    th = label_thresholds(clf, threshold)
    out = []
    for i, p in enumerate(probs):
        base = patch.name or patch.path.name
        name = base if len(probs) == 1 else f"{base}[{i}]"
        if p.size and not np.isnan(p).any():
            k = int(p.argmax())
            out.append({"input": name, "class": clf.class_names[k], "index": k, "probability": float(p[k]),
                        "probabilities": dict(zip(clf.class_names, map(float, p), strict=True))})
            if th is not None:  # multi-label: the set of classes at or above their thresholds
                out[-1]["labels"] = [c for c, v, t in zip(clf.class_names, p, th, strict=True) if v >= t]
                out[-1]["thresholds"] = dict(zip(clf.class_names, map(float, th), strict=True))
        else:
            out.append({"input": name, "class": None, "index": None, "probability": None, "nodata": True})
    return out


def scene_targets(scenes: list[Path], out: Path | None, patch_hw: tuple[int, int]) -> list[Path]:
    """Where each scene's class map goes; checked before any scene is classified.

    Raises:
        ConfigError: scenes without ``out``, or ``out`` a file where a directory is needed.
    """
    if not scenes:
        return []
    if out is None:
        ph, pw = patch_hw
        raise ConfigError(f"{scenes[0].name} is larger than the model input ({ph}x{pw}): a scene",
                          "pass --out PATH for the class-map GeoTIFF")
    # --out is a directory for several scenes, an existing directory, or a path without .tif
    out_is_dir = len(scenes) > 1 or out.is_dir() or out.suffix.lower() not in (".tif", ".tiff")
    if out_is_dir and out.exists() and not out.is_dir():
        if len(scenes) > 1:
            raise ConfigError(f"--out {out} is a file, but {len(scenes)} scenes need --out to be "
                              "a directory", "pass a directory (it is created if missing)")
        raise ConfigError(f"--out {out} is a file without a .tif suffix, so it would be a directory",
                          "pass a .tif path for the class map, or a directory")
    from .formats.bandsources import scene_id

    return [out / f"{scene_id(p)}_classes.tif" for p in scenes] if out_is_dir else [out]


def classify_inputs(clf: Classifier, inputs: list[Path], *, out: Path | None = None,
                    stride: int | None = None, batch: int = 32, probabilities: bool = False,
                    nodata_policy: str = "mask", progress: bool = True,
                    threshold: float | None = None, blend: str = "hann",
                    confidence: bool = False, quicklook: str | bool | None = None) -> ClassifyRun:
    """Classify every input with an open classifier: patches first (printed), then scenes (written).

    Every input is read and checked before the first scene is tiled, so a bad file late in the list
    fails in seconds, not after an hour of tiling.
    """
    from .formats.blend import window_1d

    window_1d(blend, 1)  # an unknown blend fails before any input is read
    run = ClassifyRun(clf.backend, clf.artifact.id, clf.precision)
    spec = clf.manifest.input
    read = [read_input(p, spec, name) for p, name in expand_inputs(list(inputs), spec)]
    scenes = [r for r in read if isinstance(r, Path)]
    targets = scene_targets(scenes, out, (int(spec.shape[2]), int(spec.shape[3])))
    if isinstance(quicklook, str) and len(scenes) > 1:
        raise ConfigError(f"--quicklook {quicklook} names one PNG, but {len(scenes)} scenes were given",
                          "pass --quicklook without a value: each map gets <map>_quicklook.png beside it")
    for r in read:
        if isinstance(r, Patch):
            run.results.extend(_patch_results(clf, r, nodata_policy, threshold))
    if out is not None and not scenes:
        run.notices.append(f"--out {out} was not written: it is for the class maps of scenes (images larger "
                           "than the model input), and every input was a patch; their classes are printed "
                           "(--json for a file)")
    for path, target in zip(scenes, targets, strict=True):
        r = classify_scene(clf, path, target, stride=stride, batch=batch, probabilities=probabilities,
                           nodata_policy=nodata_policy, progress=progress, blend=blend,
                           confidence=confidence, quicklook=quicklook)
        run.results.append({"input": path.name, "scene": True, "out": str(r.out),
                            "probabilities_out": str(r.probabilities) if r.probabilities else None,
                            "confidence_out": str(r.confidence) if r.confidence else None,
                            "quicklook": str(r.quicklook) if r.quicklook else None, "blend": r.blend,
                            "histogram": dict(zip(clf.class_names, r.histogram, strict=True)),
                            "patches": r.patches, "masked_patches": r.masked,
                            "seconds": round(r.seconds, 3), "pixels_per_s": round(r.pixels_per_s)})
    return run


__all__ = ["ClassifyRun", "Patch", "classify_inputs", "expand_inputs", "read_input", "reads_chips",
           "scene_targets"]
