"""``cmkd-edge classify`` and ``cmkd-edge profile``: the on-device commands (runtime only, no torch).

click and stdlib at module top; numpy, rasterio, rich and the runtime are imported in the command
bodies so ``cmkd-edge --help`` stays fast and needs nothing beyond the base install.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from cmkd_edge.cli._options import LiveChoice
from cmkd_edge.runtime.backends import backend_choices  # "auto" + the declared backends (stdlib-only import)

PRECISION_CHOICES = ("auto", "fp32", "fp16", "int8")


def _command_line() -> str:
    return shlex.join(["cmkd-edge", *sys.argv[1:]])


def _route_warnings() -> None:
    """Print runtime warnings (e.g. wrong units) as one 'warning:' line instead of python's format."""
    import warnings

    warnings.showwarning = lambda message, *a, **k: click.echo(f"warning: {message}", err=True)


@click.command("classify")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--backend", type=LiveChoice(backend_choices), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: backend's).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Class-map GeoTIFF for a scene (a directory when several scenes are given); "
                   "not used for patches, which are printed.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("--stride", type=click.IntRange(1), default=None, help="Scene patch stride (default: patch size).")
@click.option("--batch", type=click.IntRange(1), default=32, show_default=True, help="Patches per call.")
@click.option("--probabilities", is_flag=True, help="Also write <out>_probs.tif (one band per class).")
@click.option("--nodata-policy", type=click.Choice(["mask", "reject"]), default="mask", show_default=True,
              help="Patches with NaN/Inf/nodata: output nodata (mask) or fail (reject).")
@click.option("--rebuild", is_flag=True, help="Rebuild a TensorRT engine that does not match this GPU.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Multi-label: one decision threshold for every class (default: the bundle's "
                   "per-class thresholds, chosen on the validation split).")
@click.option("--no-speed-probe", is_flag=True,
              help="precision auto: keep the fixed order instead of the fastest gated artifact "
                   "measured here (probe cached per device and bundle; also $CMKD_EDGE_SPEED_PROBE=0).")
@click.option("--blend", type=click.Choice(["hann", "ramp", "none"]), default="hann", show_default=True,
              help="Weight overlapping windows (seamless with --stride < patch); none = nearest patch.")
@click.option("--confidence", is_flag=True, help="Also write <out>_confidence.tif (top probability).")
@click.option("--quicklook", is_flag=False, flag_value="auto", default=None, metavar="[PNG]",
              help="Also write a PNG with a legend (default <out>_quicklook.png; needs [plot]).")
@click.option("--out-dir", type=click.Path(path_type=Path), default=None,
              help="Archive mode: every input (files, folders, globs, STAC items) is a scene; maps, "
                   "per-scene records and summary.csv/json go here; finished scenes are skipped on re-runs.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Archive mode on a local Dask cluster of N worker processes (needs [cluster]).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Archive mode on an existing Dask cluster, e.g. tcp://host:8786 (needs [cluster]).")
def classify(bundle: Path, inputs: tuple[Path, ...], backend: str, precision: str, threads: int | None,
             out: Path | None, as_json: bool, stride: int | None, batch: int, probabilities: bool,
             nodata_policy: str, rebuild: bool, no_progress: bool, threshold: float | None,
             no_speed_probe: bool, blend: str, confidence: bool, quicklook: str | None,
             out_dir: Path | None, workers: int | None, scheduler: str | None) -> None:
    """Classify patches (.npy or GeoTIFF) or whole scenes with a BUNDLE.

    A patch the size of the model input prints its class and probability. A GeoTIFF larger than
    the input is tiled as a scene and written as a class-map GeoTIFF to --out.

    A scene may also be a STAC item (.json) or a folder of per-band files (10/20/60 m bands are
    resampled to the finest grid on the fly). Maps are Cloud-Optimized GeoTIFFs with a colour
    table and class names. With --out-dir every input is a scene of an archive, run here or on a
    Dask cluster (--workers N / --scheduler ADDRESS); a failed scene is reported at the end.

    \b
    Example:
      cmkd-edge classify bundle/ patch.tif other.npy
      cmkd-edge classify bundle.tar.gz scene.tif --out classes.tif --stride 32 --quicklook
      cmkd-edge classify bundle/ S2_item.json --out classes.tif --probabilities --confidence
      cmkd-edge classify bundle/ 'archive/*.json' --out-dir maps/ --workers 2
    """
    _require_extras(backend, quicklook)
    if out_dir is not None or workers is not None or scheduler is not None:
        _classify_archive(bundle, list(inputs), out, out_dir, workers, scheduler, as_json, quicklook,
                          stride=stride, blend=blend, probabilities=probabilities, confidence=confidence,
                          nodata_policy=nodata_policy, backend=backend, precision=precision, batch=batch,
                          threads=threads)
        return
    opener = {"backend": backend, "precision": precision, "threads": threads, "rebuild": rebuild,
              "probe": False if no_speed_probe else None}
    run, selection = _classify_here(bundle, list(inputs), opener, out=out, stride=stride, batch=batch,
                                    probabilities=probabilities, nodata_policy=nodata_policy,
                                    progress=not (no_progress or as_json), threshold=threshold,
                                    blend=blend, confidence=confidence,
                                    quicklook=True if quicklook == "auto" else quicklook)
    _warn_about(run, selection)
    if as_json:
        click.echo(json.dumps({**run.to_dict(), "selection": selection}, indent=2))
        return
    _print_results(run, selection)


def _require_extras(backend: str, quicklook: str | None) -> None:
    """Fail before any work when the backend or the quicklook's plotting is not installed."""
    from cmkd_edge.cli._extras import require, require_backend

    require_backend("classify", backend)
    if quicklook is not None:
        require("classify --quicklook", "plot")


def _classify_here(bundle: Path, inputs: list[Path], opener: dict[str, Any],
                   **options: Any) -> tuple[Any, dict[str, Any]]:
    """Open the bundle once (``opener``: ``Classifier.open``'s options) and classify every input
    (``options``: ``classify_inputs``'s); returns the run and how the artifact was selected."""
    from cmkd_edge.runtime.classifier import Classifier
    from cmkd_edge.runtime.inputs import classify_inputs

    _route_warnings()
    with Classifier.open(bundle, **opener) as clf:
        run = classify_inputs(clf, inputs, **options)
        selection = clf.selection or {}
    return run, selection


def _warn_about(run: Any, selection: dict[str, Any]) -> None:
    """The run's notices, and a bundle quantized for another device class, on stderr."""
    for notice in run.notices:
        click.echo(f"warning: {notice}", err=True)
    if selection.get("target_warning"):  # the bundle was quantized for another device class
        click.echo(f"warning: {run.artifact}: {selection['target_warning']}", err=True)


def _print_results(run: Any, selection: dict[str, Any]) -> None:
    """One line per input (class, labels, nodata, or a scene's output), after the selection's why."""
    click.echo(f"# {run.backend} / {run.artifact} ({run.precision}): {selection.get('why', '')}",
               err=True)
    for r in run.results:
        if r.get("scene"):
            click.echo(f"{r['input']}: {r['patches']} patches ({r['masked_patches']} nodata) -> {r['out']}"
                       f" [{r['pixels_per_s']:,} px/s]")
        elif r["class"] is None:
            click.echo(f"{r['input']}: nodata")
        elif "labels" in r:  # multi-label: every class at or above its threshold
            shown = ", ".join(f"{c} ({r['probabilities'][c]:.2f})" for c in r["labels"]) or "none"
            click.echo(f"{r['input']}: {len(r['labels'])} labels: {shown}")
        else:
            click.echo(f"{r['input']}: {r['class']} ({r['probability']:.3f})")


def _classify_archive(bundle: Path, inputs: list[Path], out: Path | None, out_dir: Path | None,
                      workers: int | None, scheduler: str | None, as_json: bool, quicklook: str | None,
                      **settings: object) -> None:
    """``classify --out-dir``: every input a scene, run here or on Dask; failures listed, then exit 1."""
    import os

    from cmkd_edge.errors import ConfigError, DataError
    from cmkd_edge.runtime.archive import SceneSettings, run_archive

    if out_dir is None:
        raise ConfigError("--workers / --scheduler run an archive and need --out-dir DIR",
                          "add --out-dir for the maps and the summary")
    if out is not None:
        raise ConfigError("--out and --out-dir both given", "an archive writes <scene id>_classes.tif into --out-dir")
    if quicklook not in (None, "auto"):
        raise ConfigError(f"--quicklook {quicklook}: in archive mode each scene gets <id>_classes_quicklook.png",
                          "pass --quicklook without a value")
    if workers and settings["threads"] is None:  # why: N single-threaded workers share the cores
        settings["threads"] = max(1, (os.cpu_count() or 1) // workers)
    cfg = SceneSettings(quicklook=quicklook is not None, **settings)  # type: ignore[arg-type]

    def say(rec: dict) -> None:
        if as_json:
            return
        if rec["status"] == "failed":
            click.echo(f"{rec['scene']}: FAILED {rec.get('error', '')}", err=True)
        else:
            what = "already done" if rec["status"] == "skipped" else f"{rec.get('seconds', 0):.1f} s"
            click.echo(f"{rec['scene']}: {what} -> {rec.get('classes')} [{rec.get('backend')}]")

    run = run_archive(bundle, inputs, out_dir, cfg, workers=workers, scheduler=scheduler, on_record=say)
    if as_json:
        click.echo(json.dumps({"run_key": run.run_key, "summary": str(run.summary_json),
                               "records": run.records}, indent=2))
    else:
        click.echo(f"# {len(run.records)} scenes: {run.count('done')} done, {run.count('skipped')} skipped "
                   f"(done before), {len(run.failed)} failed; summary: {run.summary_csv}", err=True)
    if run.failed:
        names = ", ".join(r["scene"] for r in run.failed)
        raise DataError(f"{len(run.failed)} of {len(run.records)} scenes failed ({names})",
                        f"see the errors above and {run.summary_json}; a re-run redoes only those")


@click.command("profile")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--backend", type=LiveChoice(backend_choices), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True)
@click.option("--batch", "batches", default="1", show_default=True, help="Comma-separated batch sizes.")
@click.option("--warmup", type=click.IntRange(0), default=10, show_default=True)
@click.option("--iterations", type=click.IntRange(1), default=200, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: backend's).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Write the latency report JSON here ('-' = stdout).")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path), default=None, help="Write a CSV here.")
@click.option("--plot", "plot_out", type=click.Path(path_type=Path), default=None,
              help="Write a PNG plot (needs matplotlib: pip install 'cmkd-edge[plot]').")
@click.option("--compare", is_flag=True, help="Profile every artifact x backend this device can run.")
@click.option("--rebuild", is_flag=True, help="Rebuild a TensorRT engine that does not match this GPU.")
def profile(bundle: Path, backend: str, precision: str, batches: str, warmup: int, iterations: int,
            threads: int | None, json_out: Path | None, csv_out: Path | None, plot_out: Path | None,
            compare: bool, rebuild: bool) -> None:
    """Measure latency of a BUNDLE: cold start, model-only and end-to-end percentiles, RSS.

    Model-only is the backend call inside each end-to-end call (same loop, so it can never exceed
    it); RSS added is each row's peak over what the process held when the row started. --compare
    names the artifacts this device cannot run and why.

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
    from cmkd_edge.cli._extras import require, require_backend

    require_backend("profile", backend)
    if plot_out is not None:  # before profiling, not after it
        require("profile --plot", "plot")
    from cmkd_edge.cli._options import table_console
    from cmkd_edge.runtime import profiler

    _route_warnings()
    skipped: list[dict[str, str]] = []

    def say_skipped(pairs: list[dict[str, str]]) -> None:
        skipped.extend(pairs)
        rows = len(pairs) * len(sizes)
        click.echo(f"note: --compare skips {len(pairs)} artifact x backend pair(s) ({rows} rows) this "
                   "device cannot run:", err=True)
        for why in dict.fromkeys(p["why"] for p in pairs):
            names = ", ".join(f"{p['artifact']} on {p['backend']}" for p in pairs if p["why"] == why)
            click.echo(f"  {names}: {why}", err=True)

    reports = profiler.profile_bundle(bundle, backend=backend, precision=precision, batches=sizes,
                                      warmup=warmup, iterations=iterations, threads=threads,
                                      compare=compare, rebuild=rebuild, command=_command_line(),
                                      on_skip=say_skipped)
    if json_out is not None and str(json_out) == "-":
        click.echo(json.dumps(profiler.report_document(reports, skipped), indent=2))
    else:
        table_console().print(profiler.render_table(reports))
        if json_out is not None:
            profiler.write_json(reports, json_out, skipped)
    if csv_out is not None:
        profiler.write_csv(reports, csv_out)
    if plot_out is not None:
        profiler.plot_reports(reports, plot_out)
