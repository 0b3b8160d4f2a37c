"""``cmkd-edge export | quantize | compile | bundle``: from a student checkpoint to a verified bundle.

Click and stdlib only at module top: torch, onnx, openvino and nncf are imported inside the command
bodies (via the library functions), so ``cmkd-edge --help`` and the runtime commands stay light.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from cmkd_edge.cli._options import LiveChoice
from cmkd_edge.runtime.backends import compile_targets, quantize_targets  # declarations only: no backend library

if TYPE_CHECKING:
    from cmkd_edge.export.quantize.ladder import Quantized


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("--out", "out", required=True, type=click.Path(), help="Bundle directory to write.")
@click.option("--opset", default=18, show_default=True, help="ONNX opset to write.")
@click.option("--exporter", type=click.Choice(["auto", "dynamo", "legacy"]), default="auto",
              show_default=True, help="torch exporter (auto: dynamo for opset >= 18, else legacy).")
@click.option("--data", default=None, help="Dataset for parity samples (default: the checkpoint's).")
@click.option("--max-batch", type=int, default=None, help="Largest batch the bundle promises.")
@click.option("--samples", default=16, show_default=True, help="Validation samples for parity.")
@click.option("--input-hw", default=None, metavar="H,W",
              help="Input size, only for checkpoints saved before input_hw was recorded.")
@click.option("--force", is_flag=True,
              help="Replace a bundle already at --out (without it, export refuses and lists what "
                   "would be replaced).")
@click.option("--json", "as_json", is_flag=True, help="Print the export record as JSON.")
def export(checkpoint: str, out: str, opset: int, exporter: str, data: str | None,
           max_batch: int | None, samples: int, input_hw: str | None, force: bool,
           as_json: bool) -> None:
    """Export a student CHECKPOINT (file or run dir) to a bundle with preprocessing in the graph.

    \b
    Example:
      cmkd-edge export runs/student/best.pt --out bundles/sar-student
    """
    from cmkd_edge.cli._extras import require

    if exporter == "dynamo" or (exporter == "auto" and opset >= 18):  # torch's dynamo exporter
        require(f"export --exporter {exporter} (opset {opset})", modules=["onnxscript"])
    from cmkd_edge.export.student import export_checkpoint
    from cmkd_edge.runtime.contract.manifest import read_manifest

    hw = None
    if input_hw:
        try:
            h, w = (int(v) for v in input_hw.replace("x", ",").split(","))
        except ValueError:
            raise click.BadParameter(f"{input_hw!r} is not H,W", param_hint="--input-hw") from None
        hw = (h, w)
    from cmkd_edge.export.student import existing_bundle

    replaced = existing_bundle(out)
    path = export_checkpoint(checkpoint, out, opset=opset, exporter=exporter, data=data,
                             max_batch=max_batch, samples=samples, hw=hw, force=force)
    rec = read_manifest(path).provenance.export
    assert rec is not None and rec.parity is not None  # export_checkpoint always records both
    if as_json:
        _echo_json({"bundle": str(path), "replaced": replaced, **rec.to_dict()})
        return
    if replaced:
        click.echo(f"replaced the bundle at {path} (--force): {', '.join(replaced)}")
    par = rec.parity
    click.echo(f"wrote {path}: opset {rec.opset}, IR {rec.ir_version} ({rec.exporter} "
               f"exporter); parity max |diff| {par.max_abs_diff:.2e}, top-1 identical "
               f"{par.top1_identical} over {par.cases} batches "
               f"({(par.samples_from or {}).get('data')})")


@contextlib.contextmanager
def _rung_progress(enabled: bool) -> Iterator[Callable[[str], None]]:
    """One transient progress line on stderr naming the rung being built and scored.

    Why: the rung lines used to be printed as they ran (stderr) and then again as the result table
    (stdout); now the table is the one report and this is the one progress display (gone when done,
    and silent when stderr is not a terminal, so logs hold the table only).
    """
    from rich.console import Console

    console = Console(stderr=True)
    if not (enabled and console.is_terminal):
        yield lambda _msg: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("quantize: {task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("loading calibration and validation data", total=None)
        yield lambda msg: bar.update(task, description=msg.strip()) if msg.startswith("rung") else None


@click.command("quantize")
@click.argument("bundle", type=click.Path(exists=True))
@click.option("--backend", type=LiveChoice(quantize_targets), default="onnxruntime",
              show_default=True)
@click.option("--precision", type=click.Choice(["int8", "fp16"]), default="int8", show_default=True)
@click.option("--calib-data", default=None,
              help="Dataset to calibrate on (default: the training data recorded at export).")
@click.option("--calib-split", default="train", show_default=True, help="Never 'test'.")
@click.option("--calib-size", default=128, show_default=True, help="Stratified sample size.")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]),
              default="minmax", show_default=True)
@click.option("--val-data", default=None, help="Dataset for the gate (default: --calib-data).")
@click.option("--max-drop", default=1.0, show_default=True, help="Allowed top-1 drop, points.")
@click.option("--max-class-drop", type=float, default=None,
              help="Per class, where the class has samples enough to tell (default 3x max-drop).")
@click.option("--out", default=None, type=click.Path(),
              help="Write the result here (a .tar.gz/.zip or a directory). Default: a directory "
                   "bundle is updated in place; an archive is never rewritten, the result goes "
                   "to <name>-<backend>-<precision>.tar.gz beside it.")
@click.option("--strict", is_flag=True,
              help="Exit non-zero when the request ends on a lower rung than asked (e.g. FP16 "
                   "for --precision int8).")
@click.option("--checkpoint", default=None, type=click.Path(),
              help="Student checkpoint for the int8-qat rung (default: found beside the training "
                   "run's split.csv and checked against the bundle's recorded sha256).")
@click.option("--qat-epochs", default=3, show_default=True, type=click.IntRange(0),
              help="QAT fine-tuning epochs of the int8-qat rung (0: leave the rung out).")
@click.option("--rung", "only_rungs", multiple=True,
              help="Try only these INT8 rungs (repeatable), e.g. --rung int8-qat; FP16/FP32 still "
                   "close the ladder.")
@click.option("--for", "target", default=None, metavar="DEVICE",
              help="Quantize for this device: a profile (`cmkd-edge list devices`), a JSON file "
                   "`cmkd-edge device --json` wrote on the board, or host (default).")
@click.option("--json", "as_json", is_flag=True, help="Print the quantization record as JSON.")
def quantize(bundle: str, backend: str, precision: str, calib_data: str | None, calib_split: str,
             calib_size: int, calib_method: str, val_data: str | None, max_drop: float,
             max_class_drop: float | None, out: str | None, strict: bool, checkpoint: str | None,
             qat_epochs: int, only_rungs: tuple[str, ...], target: str | None, as_json: bool) -> None:
    """Quantize BUNDLE (dir or .tar.gz/.zip) behind an accuracy gate with fallbacks.

    The gate decides on paired outcomes (the candidate and FP32 on the same validation inputs)
    with a 95 % interval, then on agreement with FP32 over the training split outside the
    calibration sample; when neither can resolve --max-drop it says so and judges on the point
    estimate. The last line says what was accepted and why.

    \b
    Example:
      cmkd-edge quantize bundles/sar-student --backend onnxruntime --precision int8 \\
          --calib-data ../shared/data/eurosat_ms_200 --max-drop 1.0
      cmkd-edge quantize bundles/s --rung int8-qat --checkpoint runs/student/best.pt
      cmkd-edge quantize bundles/s --for aarch64-dotprod     # a Raspberry Pi 5 / Jetson Orin CPU
    """
    from cmkd_edge.cli._extras import require_backend

    require_backend("quantize", backend, export_side=True)
    from cmkd_edge.errors import QuantizationError
    from cmkd_edge.export.quantize import quantize_bundle

    with _rung_progress(enabled=not as_json) as say:
        rec = quantize_bundle(bundle, backend=backend, precision=precision, calib_data=calib_data,
                              calib_split=calib_split, calib_size=calib_size,
                              calib_method=calib_method, val_data=val_data, max_drop=max_drop,
                              max_class_drop=max_class_drop, out=out, progress=say,
                              checkpoint=checkpoint, qat_epochs=qat_epochs,
                              only_rungs=list(only_rungs) or None, target=target)
    if as_json:
        _echo_json(rec.to_dict())
    else:
        print_rungs(rec)
    if not rec.passed:
        raise QuantizationError(
            f"no {precision} rung passed the accuracy gate (max drop {max_drop} points); "
            "FP32 kept", "see manifest quantization.rungs; relax --max-drop or add calibration data")
    from cmkd_edge.export.quantize.ladder import check_strict

    check_strict(rec, strict)


def print_rungs(rec: Quantized) -> None:
    """The rung table, what was removed and why, then the outcome as the last line."""
    gate = rec.gate
    assert gate is not None  # quantize_bundle always records its gate
    click.echo(f"gate: {gate.metric} on {gate.split} (n={gate.n}), FP32 "
               f"{gate.fp32_score:.2f}; --max-drop {gate.max_drop:g}, 95% paired interval")
    click.echo(f"{'rung':28s} {gate.metric:>8s} {'drop':>7s} {'95% interval':>15s}  result  why")
    for r in rec.rungs:
        if r.error is not None:
            click.echo(f"{r.rung:28s} {'':>8s} {'':>7s} {'':>15s}  error   {r.error}")
            continue
        iv = f"[{r.drop_lo:+.1f}, {r.drop_hi:+.1f}]"
        click.echo(f"{r.rung:28s} {r.score:8.2f} {r.drop:+7.2f} {iv:>15s}  "
                   f"{'PASS' if r.passed else 'fail':6s}  {r.reason}")
    if rec.target is not None:
        types = rec.extra.get("int8_types") or {}
        note = types.get("reason") or rec.extra.get("target_note") or ""
        click.echo(f"target: {rec.target.profile}" + (f" -> {types['name']}" if types.get("name") else "")
                   + (f" ({note})" if note else ""))
    for gone in rec.replaced:
        click.echo(f"removed {gone.id}"
                   f"{' (it had passed its gate)' if gone.gate_passed else ''}: {gone.why}")
    if rec.bundle:
        click.echo(f"wrote {rec.bundle}")
    if gate.unresolved_note:
        click.echo(f"unresolved: {gate.unresolved_note}")
    if rec.qat_not_offered and rec.requested_precision == "int8":
        click.echo(f"note: int8-qat not tried: {rec.qat_not_offered}")
    click.echo(rec.outcome)


@click.command("compile")
@click.argument("bundle", type=click.Path(exists=True))
@click.option("--target", type=LiveChoice(compile_targets), required=True)
@click.option("--precision", "precisions", multiple=True,
              type=click.Choice(["fp32", "fp16", "int8"]),
              help="Repeatable (default: the target's first, e.g. fp32 for openvino, fp16 for "
                   "tensorrt).")
@click.option("--device", default="CPU", show_default=True, help="OpenVINO device: CPU|GPU|NPU.")
@click.option("--cache-dir", default=None, help="OpenVINO model cache directory.")
@click.option("--min-batch", type=int, default=None, help="TensorRT profile minimum (default 1).")
@click.option("--opt-batch", type=int, default=None,
              help="TensorRT profile optimum (default: --max-batch, the size batches run at).")
@click.option("--max-batch", type=int, default=None, help="TensorRT profile maximum (default 8).")
@click.option("--timing-cache", default=None,
              help="TensorRT timing cache file (default: per user and device, in the cache dir).")
@click.option("--strongly-typed", is_flag=True, help="TensorRT STRONGLY_TYPED network.")
@click.option("--out", default=None, type=click.Path(),
              help="Write the result here (.tar.gz/.zip or a directory). Default: a directory "
                   "bundle in place; an archive is never rewritten (<name>-<target>.tar.gz beside it).")
@click.option("--for", "for_device", default=None, metavar="DEVICE",
              help="Compile for this device: a profile (`cmkd-edge list devices`), a JSON file "
                   "`cmkd-edge device --json` wrote on the board, or host (default). Recorded in "
                   "the manifest; says when an INT8 gate run here does not hold there.")
@click.option("--json", "as_json", is_flag=True)
def compile_cmd(bundle: str, target: str, precisions: tuple[str, ...], device: str,
                cache_dir: str | None, min_batch: int | None, opt_batch: int | None,
                max_batch: int | None,
                timing_cache: str | None, strongly_typed: bool, out: str | None,
                for_device: str | None, as_json: bool) -> None:
    """Compile BUNDLE for OpenVINO (IR) or TensorRT (plan + fingerprint).

    \b
    Examples:
      cmkd-edge compile bundles/s --target openvino --precision fp32 --precision int8
      cmkd-edge compile bundles/s --target tensorrt --precision fp16 --max-batch 16
      cmkd-edge compile bundles/s --target openvino --precision fp16 --for aarch64-dotprod
    """
    from cmkd_edge.export.compile import compile_bundle

    arts = compile_bundle(bundle, target=target, precisions=precisions or None, device=device,
                          cache_dir=cache_dir, min_batch=min_batch, opt_batch=opt_batch,
                          max_batch=max_batch, timing_cache=timing_cache,
                          strongly_typed=strongly_typed, out=out, for_device=for_device)
    if as_json:
        _echo_json([c.to_dict() for c in arts])
        return
    for c in arts:
        a, gate = c.artifact, c.artifact.gate
        word = {True: "pass", False: "FAIL", None: "not run"}[a.gate_passed]
        verdict = ("" if a.gate_passed is None and gate is None else
                   f"; gate {word}" + (f" ({gate.why})" if gate is not None and gate.why else ""))
        made = f" for {a.target.profile}" if a.target is not None and for_device is not None else ""
        click.echo(f"added {a.id}{made}: {', '.join(a.files)} (from {a.source}){verdict}")
        for n in c.notes:
            click.echo(f"note: {a.id}: {n}")
        for r in c.replaced:
            click.echo(f"removed {r.id}{' (it had passed its gate)' if r.gate_passed else ''}: "
                       f"{r.why}")
    if arts:
        click.echo(f"wrote {arts[0].bundle}")


@click.command("bundle")
@click.argument("bundle", type=click.Path(exists=True))
@click.option("--verify", "action", flag_value="verify", help="Check every sha256 and the schema.")
@click.option("--inspect", "action", flag_value="inspect", help="Print the manifest as a table.")
@click.option("--pack", "pack_to", default=None, help="Write OUT.tar.gz or OUT.zip.")
@click.option("--json", "as_json", is_flag=True)
def bundle(bundle: str, action: str | None, pack_to: str | None, as_json: bool) -> None:
    """Verify, inspect or pack a BUNDLE (directory or .tar.gz/.zip).

    \b
    Examples:
      cmkd-edge bundle bundles/s --verify
      cmkd-edge bundle bundles/s --inspect --json
      cmkd-edge bundle bundles/s --pack s.tar.gz
    """
    from cmkd_edge.errors import ConfigError
    from cmkd_edge.runtime.contract.bundle import open_bundle, pack_bundle

    if not action and not pack_to:
        raise ConfigError("nothing to do", "give --verify, --inspect or --pack OUT.tar.gz")
    opened = open_bundle(bundle)  # verifies every sha256 and the schema version
    m = opened.manifest
    if pack_to:
        out = pack_bundle(opened.root, pack_to)
        click.echo(json.dumps({"packed": str(out)}) if as_json else f"packed {out}")
        return
    if action == "verify":
        msg = {"ok": True, "files": len(m.files), "artifacts": [a.id for a in m.artifacts]}
        click.echo(json.dumps(msg) if as_json else
                   f"ok: {len(m.files)} files match their sha256; artifacts "
                   f"{', '.join(msg['artifacts'])}")
        return
    if as_json:
        _echo_json(m.to_dict())
        return
    from cmkd_edge.runtime.contract.describe import describe_manifest

    click.echo(describe_manifest(opened.manifest))
