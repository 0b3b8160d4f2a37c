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


def _require_backend(command: str, backend: str) -> None:
    """An explicitly chosen OpenVINO backend that is not installed: name the extra before opening anything.

    (TensorRT also needs a GPU, so the classifier's own "not available on this device" stays its message.)
    """
    from cmkd_edge.cli._extras import require

    if backend == "openvino":
        require(f"{command} --backend {backend}", modules=[backend])


def _route_warnings() -> None:
    """Print runtime warnings (e.g. wrong units) as one 'warning:' line instead of python's format."""
    import warnings

    warnings.showwarning = lambda message, *a, **k: click.echo(f"warning: {message}", err=True)


@click.command("classify")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True)
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
def classify(bundle: Path, inputs: tuple[Path, ...], backend: str, precision: str, threads: int | None,
             out: Path | None, as_json: bool, stride: int | None, batch: int, probabilities: bool,
             nodata_policy: str, rebuild: bool, no_progress: bool, threshold: float | None,
             no_speed_probe: bool) -> None:
    """Classify patches (.npy or GeoTIFF) or whole scenes with a BUNDLE.

    A patch the size of the model input prints its class and probability. A GeoTIFF larger than
    the input is tiled as a scene and written as a class-map GeoTIFF to --out.

    \b
    Example:
      cmkd-edge classify bundle/ patch.tif other.npy
      cmkd-edge classify bundle.tar.gz scene.tif --out classes.tif --stride 32
    """
    _require_backend("classify", backend)
    from cmkd_edge.runtime.classifier import Classifier
    from cmkd_edge.runtime.inputs import classify_inputs

    _route_warnings()
    with Classifier.open(bundle, backend=backend, precision=precision, threads=threads,
                         rebuild=rebuild, probe=False if no_speed_probe else None) as clf:
        run = classify_inputs(clf, list(inputs), out=out, stride=stride, batch=batch,
                              probabilities=probabilities, nodata_policy=nodata_policy,
                              progress=not (no_progress or as_json), threshold=threshold)
        selection = clf.selection or {}
    for notice in run.notices:
        click.echo(f"warning: {notice}", err=True)
    if as_json:
        click.echo(json.dumps({**run.to_dict(), "selection": selection}, indent=2))
        return
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
    from cmkd_edge.cli._extras import require

    _require_backend("profile", backend)
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
