"""``cmkd-edge select``: the deployment that fits a device budget, measured here (base install: no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cmkd_edge.cli._options import json_option


@click.command("select")
@click.argument("bundles", nargs=-1, required=True, metavar="BUNDLE...")
@click.option("--data", default=None, metavar="PATH",
              help="Labelled data to score on (default: each bundle's recorded training data): a "
                   "dataset folder, or a .npz with arrays x (raw N,C,H,W) and labels.")
@click.option("--split", default="val", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--max-latency-ms", default=None, metavar="MS",
              help="Latency limit at --percentile, end to end, at --batch and each thread count "
                   "(ms; also 0.5s, 800us).")
@click.option("--percentile", default="p99", show_default=True, type=click.Choice(["p50", "p90", "p99"]))
@click.option("--max-memory-mb", default=None, metavar="MiB",
              help="Limit on the RSS an artifact adds while it runs (MiB; also GiB, MB, GB).")
@click.option("--max-size-mb", default=None, metavar="MiB", help="Limit on the artifact's files (MiB; also MB, GB).")
@click.option("--min-accuracy", default=None, metavar="PCT", help="Least accuracy in percent (90 or 90%).")
@click.option("--max-drop", default=None, metavar="POINTS",
              help="Most points below the candidate's own bundle's FP32 on the same samples.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1), help="Batch size timed.")
@click.option("--threads", "threads_text", default=None, metavar="N,N",
              help="Thread counts to measure (default: 1 and every core).")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(0))
@click.option("--iterations", default=200, show_default=True, type=click.IntRange(1),
              help="Timed calls per candidate (p99 needs ~100 or more).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the decision (default: selection.json beside the bundles).")
@click.option("--no-cache", is_flag=True, help="Measure again instead of reusing this device's measurements.")
@json_option
def select(bundles: tuple[str, ...], data: str | None, split: str, max_latency_ms: str | None,
           percentile: str, max_memory_mb: str | None, max_size_mb: str | None,
           min_accuracy: str | None, max_drop: str | None, batch: int, threads_text: str | None,
           warmup: int, iterations: int, out: Path | None, no_cache: bool, as_json: bool) -> None:
    """Choose the artifact x backend x threads of BUNDLE... that fits a budget on this device.

    Every artifact x backend x thread count this device runs is measured through the runtime
    (accuracy as `evaluate` scores it, latency and memory as `profile` times them), the Pareto
    front of accuracy against latency and size is kept, and the fastest candidate inside the
    budget is chosen. When none fits, the nearest candidates are listed with the constraint they
    miss and by how much, and the exit code is 1. The decision goes to selection.json beside the
    bundles (read by `cmkd-edge report`); measurements are cached per artifact and device, so
    another budget is answered at once.

    \b
    Examples:
      cmkd-edge select bundles/small bundles/large --split val --max-latency-ms 5 --percentile p99
      cmkd-edge select bundles/* --max-drop 1 --max-size-mb 4 --json
      cmkd-edge select student.tar.gz --data val.npz --min-accuracy 90 --threads 1
    """
    from cmkd_edge.cli.evaluate import bundle_inputs
    from cmkd_edge.errors import ConfigError
    from cmkd_edge.runtime.selection.budget import make_budget
    from cmkd_edge.runtime.selection.choose import run_selection, selection_path, write_selection

    budget = make_budget(percentile, max_latency_ms=max_latency_ms, max_memory_mb=max_memory_mb,
                         max_size_mb=max_size_mb, min_accuracy=min_accuracy, max_drop=max_drop)
    threads = None
    if threads_text is not None:
        try:
            threads = [int(t) for t in threads_text.split(",") if t.strip()]
        except ValueError:
            threads = []
        if not threads or min(threads) < 1:
            raise ConfigError(f"--threads {threads_text!r} needs positive integers, e.g. 1,4")
    say = None if as_json else (lambda msg: click.echo(f"select: {msg}", err=True))
    sel = run_selection(list(bundles), lambda b: bundle_inputs(b, data, split), budget,
                        data=data, split=split, batch=batch, threads=threads, warmup=warmup,
                        iterations=iterations, use_cache=not no_cache, progress=say,
                        command=_command_line())
    path = write_selection(sel, out or selection_path(bundles))
    if as_json:
        click.echo(json.dumps({**sel.to_dict(), "written": str(path)}, indent=2))
    else:
        print_selection(sel, path)
    if sel.chosen is None:  # a result, not bad input: the table is printed, then exit 1
        click.echo(f"error: {sel.why}", err=True)
        raise SystemExit(1)


def _command_line() -> str:
    import shlex
    import sys

    return shlex.join(["cmkd-edge", *sys.argv[1:]])


def print_selection(sel: Any, path: Path) -> None:
    """The table (one row per candidate: front and budget marks, the chosen row first), skips, decision."""
    from rich.table import Table

    from cmkd_edge.cli._options import table_console

    console = table_console()
    p = sel.budget.percentile
    data = "; ".join(dict.fromkeys(f"{b.data}" + (" (SYNTHETIC)" if b.synthetic else "") for b in sel.bundles))
    t = Table(title=f"select: {sel.budget.describe()} - batch {sel.batch}, end-to-end ms; accuracy on "
                    f"{sel.split} ({data}) with 95% intervals; * = Pareto front (accuracy vs {p} and size)")
    for col in ("", "bundle", "artifact", "backend", "thr", "accuracy % [95%]", "n", "drop [95%]",
                f"{p} ms", "p50 ms", "cold ms", "mem MiB", "size MiB", "budget"):
        t.add_column(col, overflow="fold",
                     justify="left" if col in ("", "bundle", "artifact", "backend", "budget") else "right")
    order = sorted(sel.candidates, key=lambda c: (c.id != sel.chosen, not c.fits, c.latency_ms[p]))
    for c in order:
        mark = ("->" if c.id == sel.chosen else "") + ("*" if c.pareto else "")
        drop = ("-" if c.drop is None or c.drop_interval is None else
                f"{c.drop:+.2f} [{c.drop_interval[0]:+.2f}, {c.drop_interval[1]:+.2f}]")
        fit = "fits" if c.fits else "misses " + ", ".join(f.constraint for f in c.fails)
        t.add_row(mark, c.bundle, c.artifact, c.backend, str(c.threads),
                  f"{c.accuracy:.2f} [{c.accuracy_interval[0]:.2f}, {c.accuracy_interval[1]:.2f}]",
                  str(c.n), drop, f"{c.latency_ms[p]:.3f}", f"{c.latency_ms['p50']:.3f}",
                  f"{c.latency_ms['cold_start']:.0f}", "n/a" if c.memory_mb is None else f"{c.memory_mb:.1f}",
                  f"{c.size_mb:.2f}", fit)
    console.print(t)
    for s in sel.skipped:
        console.print(f"note: not measured here: {s.bundle} {s.artifact} on {s.backend}: {s.why}", markup=False)
    cached = sum(c.cached for c in sel.candidates)
    if cached:
        console.print(f"note: {cached} of {len(sel.candidates)} candidates from this device's cache "
                      "(--no-cache measures again)", markup=False)
    if sel.chosen:
        console.print(f"chosen: {sel.why}", markup=False, soft_wrap=True)
    console.print(f"wrote {path}", markup=False)
