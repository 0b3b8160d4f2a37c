"""``cmkd-edge report``: one self-contained HTML page (or Markdown) about a bundle, for the hand-over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cmkd_edge.cli._options import json_option


@click.command("report")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--data", default=None, metavar="PATH",
              help="Labelled data for the accuracy sections (default: the bundle's recorded training "
                   "data): a dataset folder, or a .npz with arrays x (raw N,C,H,W) and labels.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file (default: <bundle>.report.html or .md beside the bundle).")
@click.option("--format", "fmt", type=click.Choice(["html", "md"]), default="html", show_default=True)
@click.option("--evaluation", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Use this `cmkd-edge evaluate BUNDLE --json` output instead of scoring here.")
@click.option("--latency", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Use this `cmkd-edge profile BUNDLE --compare --json FILE` report instead of timing here.")
@click.option("--selection", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A `cmkd-edge select` decision (default: selection.json beside the bundle, if it measured it).")
@click.option("--batch", "batches", default="1", show_default=True, help="Batch sizes timed (comma-separated).")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(0))
@click.option("--iterations", default=200, show_default=True, type=click.IntRange(1))
@json_option
def report(bundle: Path, data: str | None, split: str, out: Path | None, fmt: str, evaluation: Path | None,
           latency: Path | None, selection: Path | None, batches: str, warmup: int, iterations: int,
           as_json: bool) -> None:
    """Write a report a person can read about BUNDLE: one HTML file, no network needed to open it.

    Model card (task, classes, student and teacher, parameters and MACs, views and preprocessing,
    method and options, labels seen, data and split hashes, commands); accuracy per artifact x
    backend with n and 95 % intervals; the quantization gate's ladder; per-class drop, confusion
    matrix and calibration; latency per backend and precision (cold start, p50/p90/p99, memory,
    size) with plots; the device, CPU flags and library versions; the `select` decision and front
    when selection.json is beside the bundle; every file with its sha256; warnings. Accuracy and
    latency are measured here unless given as `evaluate --json` / `profile --json` files. Nothing
    in the bundle is changed. --format md writes Markdown with the plots as SVG files beside it.

    \b
    Examples:
      cmkd-edge report bundles/rgb-student --split test --out rgb-student.html
      cmkd-edge report rgb-student.tar.gz --data test.npz --format md --out docs/rgb-student.md
      cmkd-edge report bundles/s --evaluation eval.json --latency latency.json
    """
    from datetime import datetime, timezone

    from cmkd_edge.errors import ConfigError
    from cmkd_edge.fsutil import atomic_write_text
    from cmkd_edge.runtime.contract.bundle import open_bundle
    from cmkd_edge.runtime.report.build import Inputs, build, choose_selection
    from cmkd_edge.runtime.report.render import to_html, to_markdown
    from cmkd_edge.runtime.selection.choose import SELECTION_NAME

    try:
        sizes = tuple(int(v) for v in batches.split(",") if v.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--batch {batches!r} needs positive integers, e.g. 1,8")
    say = (lambda _m: None) if as_json else (lambda msg: click.echo(f"report: {msg}", err=True))
    b = open_bundle(bundle)
    inp = Inputs(bundle=b, command=_command_line(),
                 created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _evaluation(inp, evaluation, data, split, say)
    _latency(inp, latency, sizes, warmup, iterations, say)
    where = [selection] if selection is not None else [bundle.resolve().parent / SELECTION_NAME]
    found = choose_selection(where, b)
    if found is None and selection is not None:
        raise ConfigError(f"{selection} is a selection that did not measure {bundle}",
                          "run cmkd-edge select with this bundle, or leave --selection out")
    if found is not None:
        inp.selection, inp.selection_path = found
    doc = build(inp)
    target = out or bundle.resolve().parent / f"{bundle.name.split('.')[0]}.report.{fmt}"
    if _inside(target, b.root):
        raise ConfigError(f"--out {target} is inside the bundle", "a bundle's files are checksummed; write beside it")
    if fmt == "html":
        atomic_write_text(target, to_html(doc))
    else:
        text, figures = to_markdown(doc, target)
        for path, svg in figures.items():
            atomic_write_text(path, svg)
        atomic_write_text(target, text)
    warnings = next(s for s in doc.sections if s.id == "warnings").blocks[0].items  # type: ignore[union-attr]
    if as_json:
        click.echo(json.dumps({"written": str(target), "format": fmt,
                               "sections": [s.title for s in doc.sections], "warnings": warnings}, indent=2))
        return
    click.echo(f"wrote {target} ({len(doc.sections)} sections, {len(warnings)} warning line(s))")


def _command_line() -> str:
    import shlex
    import sys

    return shlex.join(["cmkd-edge", *sys.argv[1:]])


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _evaluation(inp: Any, path: Path | None, data: str | None, split: str, say: Any) -> None:
    """An ``evaluate --json`` file, or a measurement here; without --data a failure is a stated note."""
    from cmkd_edge.cli.evaluate import bundle_inputs
    from cmkd_edge.errors import CmkdError, DataError
    from cmkd_edge.runtime.evaluate import evaluate_bundle

    if path is not None:
        doc = _load_json(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list) or "metric" not in doc:
            raise DataError(f"{path} is not the output of `cmkd-edge evaluate BUNDLE --json`")
        inp.evaluation = doc
        return
    try:
        x, labels, info = bundle_inputs(inp.bundle, data, split)
    except CmkdError as exc:
        if data is not None:
            raise
        inp.evaluation_note = (f"the bundle's recorded data could not be read here ({exc.one_line()}); "
                               "give --data (a labelled dataset, or a .npz with arrays x and labels)")
        say(f"accuracy not measured: {inp.evaluation_note}")
        return
    say(f"scoring every artifact x backend on {split} (n={len(labels)})")
    doc = evaluate_bundle(inp.bundle, x, labels, split=split, data=str(info.get("data")), latency_iterations=0,
                          progress=say)
    doc.update(split_table=info.get("split_table"), synthetic=info.get("synthetic"))
    inp.evaluation = doc


def _latency(inp: Any, path: Path | None, sizes: tuple[int, ...], warmup: int, iterations: int, say: Any) -> None:
    from cmkd_edge.errors import DataError
    from cmkd_edge.runtime import profiler

    if path is not None:
        doc = _load_json(path)
        ok = isinstance(doc, dict) and doc.get("schema") == profiler.SCHEMA and isinstance(doc.get("reports"), list)
        if not ok:
            raise DataError(f"{path} is not a latency report (`cmkd-edge profile BUNDLE --json FILE`)",
                            f"expected schema {profiler.SCHEMA!r}")
        inp.latency, inp.latency_skipped = doc["reports"], doc.get("skipped") or []
        return
    say(f"timing every artifact x backend at batch {','.join(map(str, sizes))} ({iterations} calls each)")
    reps = profiler.profile_bundle(inp.bundle, compare=True, batches=sizes, warmup=warmup, iterations=iterations,
                                   command=inp.command, on_skip=inp.latency_skipped.extend)
    inp.latency = [r.to_dict() for r in reps]


def _load_json(path: Path) -> Any:
    from cmkd_edge.errors import DataError

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not readable JSON ({exc})") from None
