"""``cmkd-edge classify`` and ``cmkd-edge profile``: the on-device commands (runtime only, no torch).

click and stdlib at module top; numpy, rasterio, rich and the runtime are imported in the command
bodies so ``cmkd-edge --help`` stays fast and needs nothing beyond the base install.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from cmkd_edge.runtime.backends import BACKEND_CHOICES  # "auto" + the declared backends (stdlib-only import)

PRECISION_CHOICES = ("auto", "fp32", "fp16", "int8")


def _command_line() -> str:
    return shlex.join(["cmkd-edge", *sys.argv[1:]])


def _route_warnings() -> None:
    """Print runtime warnings (e.g. wrong units) as one 'warning:' line instead of python's format."""
    import warnings

    warnings.showwarning = lambda message, *a, **k: click.echo(f"warning: {message}", err=True)


def _read_patch(path: Path):  # -> (np.ndarray, None) | (None, (h, w))
    """Return (array, None) for a .npy or GeoTIFF, or (None, (h, w)) to defer a GeoTIFF to scene mode."""
    import numpy as np

    from cmkd_edge.errors import DataError

    if not path.exists():
        raise DataError(f"input {path} does not exist")
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False), None
        except (ValueError, OSError) as exc:
            raise DataError(f"{path} is not a readable .npy array ({exc})") from exc
    import rasterio

    try:
        with rasterio.open(path) as src:
            return None, (src.height, src.width)
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"{path} is not a readable GeoTIFF ({exc})") from exc


@click.command("classify")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: backend's).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Class-map GeoTIFF for a scene (a directory when several scenes are given).")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("--stride", type=click.IntRange(1), default=None, help="Scene patch stride (default: patch size).")
@click.option("--batch", type=click.IntRange(1), default=32, show_default=True, help="Patches per call.")
@click.option("--probabilities", is_flag=True, help="Also write <out>_probs.tif (one band per class).")
@click.option("--nodata-policy", type=click.Choice(["mask", "reject"]), default="mask", show_default=True,
              help="Patches with NaN/Inf/nodata: output nodata (mask) or fail (reject).")
@click.option("--rebuild", is_flag=True, help="Rebuild a TensorRT engine that does not match this GPU.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def classify(bundle: Path, inputs: tuple[Path, ...], backend: str, precision: str, threads: int | None,
             out: Path | None, as_json: bool, stride: int | None, batch: int, probabilities: bool,
             nodata_policy: str, rebuild: bool, no_progress: bool) -> None:
    """Classify patches (.npy or GeoTIFF) or whole scenes with a BUNDLE.

    A patch the size of the model input prints its class and probability. A GeoTIFF larger than
    the input is tiled as a scene and written as a class-map GeoTIFF to --out.

    \b
    Example:
      cmkd-edge classify bundle/ patch.tif other.npy
      cmkd-edge classify bundle.tar.gz scene.tif --out classes.tif --stride 32
    """
    from cmkd_edge.errors import ConfigError
    from cmkd_edge.runtime.classifier import Classifier
    from cmkd_edge.runtime.scene import classify_scene

    _route_warnings()
    results: list[dict] = []
    with Classifier.open(bundle, backend=backend, precision=precision, threads=threads,
                         rebuild=rebuild) as clf:
        spec = clf.manifest.input
        ph, pw = spec.shape[2], spec.shape[3]
        scenes = []
        for path in inputs:
            arr, hw = _read_patch(path)
            if arr is None and hw != (ph, pw):
                scenes.append(path)
                continue
            file_nodata = None  # None: the manifest's nodata (a .npy carries none of its own)
            if arr is None:
                arr, file_nodata = _read_geotiff_patch(path, spec.band_names)
            probs = clf.predict(arr, nodata_policy=nodata_policy, nodata=file_nodata)
            for i, p in enumerate(probs):
                name = path.name if len(probs) == 1 else f"{path.name}[{i}]"
                if p.size and not (p != p).any():
                    k = int(p.argmax())
                    results.append({"input": name, "class": clf.class_names[k], "index": k,
                                    "probability": float(p[k]),
                                    "probabilities": dict(zip(clf.class_names, map(float, p), strict=True))})
                else:
                    results.append({"input": name, "class": None, "index": None, "probability": None,
                                    "nodata": True})
        if scenes and out is None:
            raise ConfigError(f"{scenes[0].name} is larger than the model input ({ph}x{pw}): a scene",
                              "pass --out PATH for the class-map GeoTIFF")
        # --out is a directory for several scenes, an existing directory, or a path without .tif
        out_is_dir = bool(scenes) and (len(scenes) > 1 or out.is_dir()
                                       or out.suffix.lower() not in (".tif", ".tiff"))
        if out_is_dir and out.exists() and not out.is_dir():  # checked before any scene is written
            if len(scenes) > 1:
                raise ConfigError(f"--out {out} is a file, but {len(scenes)} scenes need --out to be "
                                  "a directory", "pass a directory (it is created if missing)")
            raise ConfigError(f"--out {out} is a file without a .tif suffix, so it would be a directory",
                              "pass a .tif path for the class map, or a directory")
        for path in scenes:
            target = out / f"{path.stem}_classes.tif" if out_is_dir else out
            r = classify_scene(clf, path, target, stride=stride, batch=batch,
                               probabilities=probabilities, nodata_policy=nodata_policy,
                               progress=not (no_progress or as_json))
            results.append({"input": path.name, "scene": True, "out": str(r.out),
                            "probabilities_out": str(r.probabilities) if r.probabilities else None,
                            "patches": r.patches, "masked_patches": r.masked,
                            "seconds": round(r.seconds, 3), "pixels_per_s": round(r.pixels_per_s)})
        used = {"backend": clf.backend, "artifact": clf.artifact.id, "precision": clf.precision}
    if as_json:
        click.echo(json.dumps({**used, "results": results}, indent=2))
        return
    click.echo(f"# {used['backend']} / {used['artifact']} ({used['precision']})", err=True)
    for r in results:
        if r.get("scene"):
            click.echo(f"{r['input']}: {r['patches']} patches ({r['masked_patches']} nodata) -> {r['out']}"
                       f" [{r['pixels_per_s']:,} px/s]")
        elif r["class"] is None:
            click.echo(f"{r['input']}: nodata")
        else:
            click.echo(f"{r['input']}: {r['class']} ({r['probability']:.3f})")


def _read_geotiff_patch(path: Path, band_names: tuple[str, ...]):  # -> (np.ndarray, float | None)
    """The patch's bands in model order, as stored, and the file's nodata value (None if unset).

    Why the nodata value is returned rather than applied: the runtime's validation is the one place
    that recognises nodata (the same for patches and scenes), so it is passed on to ``predict``.
    """
    import rasterio

    from cmkd_edge.errors import DataError
    from cmkd_edge.runtime.scene import _band_indexes

    try:
        with rasterio.open(path) as src:
            return src.read(_band_indexes(src, band_names, path)), src.nodata
    except rasterio.errors.RasterioIOError as exc:  # header fine, pixel blocks truncated/corrupt
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path} is truncated or corrupt (reading its pixels failed: {first})") from exc


@click.command("profile")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True)
@click.option("--batch", "batches", default="1", show_default=True, help="Comma-separated batch sizes.")
@click.option("--warmup", type=click.IntRange(0), default=10, show_default=True)
@click.option("--iterations", type=click.IntRange(1), default=200, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: backend's).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Write the latency report JSON here ('-' = stdout).")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path), default=None, help="Write a CSV here.")
@click.option("--plot", "plot_out", type=click.Path(path_type=Path), default=None,
              help="Write a PNG plot (needs matplotlib).")
@click.option("--compare", is_flag=True, help="Profile every artifact x backend this device can run.")
@click.option("--rebuild", is_flag=True, help="Rebuild a TensorRT engine that does not match this GPU.")
def profile(bundle: Path, backend: str, precision: str, batches: str, warmup: int, iterations: int,
            threads: int | None, json_out: Path | None, csv_out: Path | None, plot_out: Path | None,
            compare: bool, rebuild: bool) -> None:
    """Measure latency of a BUNDLE: cold start, model-only and end-to-end percentiles, RSS.

    \b
    Example:
      cmkd-edge profile bundle/ --batch 1,8,32 --json latency.json
      cmkd-edge profile bundle.tar.gz --compare --plot latency.png
    """
    from cmkd_edge.errors import ConfigError

    try:
        sizes = tuple(int(b) for b in batches.split(",") if b.strip())
    except ValueError as exc:
        raise ConfigError(f"--batch {batches!r} is not a comma-separated list of integers") from exc
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--batch {batches!r} needs positive integers, e.g. 1,8,32")
    from rich.console import Console

    from cmkd_edge.runtime import profiler

    _route_warnings()
    reports = profiler.profile_bundle(bundle, backend=backend, precision=precision, batches=sizes,
                                      warmup=warmup, iterations=iterations, threads=threads,
                                      compare=compare, rebuild=rebuild, command=_command_line())
    if json_out is not None and str(json_out) == "-":
        click.echo(json.dumps({"schema": profiler.SCHEMA, "schema_version": profiler.SCHEMA_VERSION,
                               "reports": [r.to_dict() for r in reports]}, indent=2))
    else:
        console = Console()
        if not console.is_terminal:  # pipes/CI: don't squeeze the table into 80 columns
            console = Console(width=160)
        console.print(profiler.render_table(reports))
        if json_out is not None:
            profiler.write_json(reports, json_out)
    if csv_out is not None:
        profiler.write_csv(reports, csv_out)
    if plot_out is not None:
        profiler.plot_reports(reports, plot_out)
