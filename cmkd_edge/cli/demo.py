"""``cmkd-edge demo``: the whole pipeline on small data, as a list of steps.

Each step is a function ``step(state) -> None`` that reads what earlier steps left in the
:class:`DemoState` and adds its own results (runs, rows of the final table, notes). Later stages
append their steps to :data:`STEPS` (export, quantize, compile, bundle, classify, profile) without
touching the ones here. Steps import torch lazily, so ``--help`` stays light.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from cmkd_edge.cli._options import check_data_path, device_option
from cmkd_edge.cli.demo_deploy import DEPLOY_STEPS, print_artifacts
from cmkd_edge.errors import ConfigError

MARKER = "demo.json"


@dataclass
class DemoState:
    """What the steps share. ``runs`` maps a name ("teacher", "student", ...) to its run directory."""

    workdir: Path
    data: str | None
    device: str = "auto"
    quiet: bool = False
    teacher_view: str = "ms"
    student_view: str = "sar"
    synthetic: bool = True
    epochs_teacher: int = 12
    epochs_student: int = 12
    runs: dict[str, Path] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def say(self, msg: str) -> None:
        if not self.quiet:
            click.echo(msg, err=True)


Step = Callable[[DemoState], None]


def _train(state: DemoState, name: str, **kwargs: Any) -> dict[str, Any]:
    from cmkd_edge.distill.config import TrainConfig
    from cmkd_edge.distill.trainer import train

    out = state.workdir / name
    cfg = TrainConfig(out=out, data=state.data, device=state.device, quiet=state.quiet,
                      command=f"cmkd-edge demo (step {name})", **kwargs)
    summary = train(cfg)
    state.runs[name] = out
    return summary


def step_data(state: DemoState) -> None:
    """Open the data, say whether it is synthetic, pick the student view (real SAR if present)."""
    from cmkd_edge.data import open_dataset

    ds = open_dataset(state.data, views=[state.teacher_view], split="train", seed=0, augment=False,
                      split_file=None)
    desc = ds.describe()
    state.synthetic = bool(desc.get("synthetic", state.data is None))
    state.student_view = "sar" if "s1" in ds.source_band_names else "sar-sim"
    if state.student_view == "sar-sim":
        state.notes.append("the data has no SAR source: the student sees SIMULATED SAR (sar-sim)")
    kind = "SYNTHETIC (generated, not real imagery)" if state.synthetic else "real"
    state.say(f"data: {state.data or 'synthetic default'} - {kind}; {len(ds.class_names)} classes, "
              f"task {ds.task}; teacher view {state.teacher_view}, student view {state.student_view}")
    state.results["data"] = desc


def step_teacher(state: DemoState) -> None:
    """Train a small optical teacher on all multispectral bands."""
    state.say(f"teacher: resnet-narrow on {state.teacher_view}, {state.epochs_teacher} epochs")
    _train(state, "teacher", view=state.teacher_view, arch="resnet-narrow", epochs=state.epochs_teacher,
           lr=3e-3, batch_size=16)


def step_student_nokd(state: DemoState) -> None:
    """The student without a teacher: the baseline KD has to beat."""
    state.say(f"student without KD: mobilenetv2-tiny on {state.student_view}")
    _train(state, "student-nokd", view=state.student_view, arch="mobilenetv2-tiny",
           epochs=state.epochs_student, lr=3e-3, batch_size=16)


def step_student_kd(state: DemoState) -> None:
    """Distil the teacher into the student with logit KD."""
    state.say(f"student with KD: mobilenetv2-tiny on {state.student_view} from the {state.teacher_view} teacher")
    _train(state, "student-kd", view=state.student_view, arch="mobilenetv2-tiny",
           epochs=state.epochs_student, lr=3e-3, batch_size=16, method="kd",
           teacher=str(state.runs["teacher"] / "best.pt"))


def step_evaluate(state: DemoState) -> None:
    """Score every trained model on the test split with ``evaluate`` (what a user would run)."""
    from cmkd_edge.distill.evaluation import evaluate_checkpoint

    for name in ("teacher", "student-nokd", "student-kd"):
        if name not in state.runs:
            continue
        r = evaluate_checkpoint(state.runs[name] / "best.pt", state.data, "test", device=state.device)
        state.results[name] = r
        state.rows.append({"model": name, "arch": r["arch"], "view": r["view"],
                           "test accuracy": r.get("accuracy", r.get("map")),
                           "macro-F1": r["macro_f1"], "n": r["n"]})


#: The demo, in order: training, evaluation, then the deployment steps of ``demo_deploy``.
STEPS: list[tuple[str, Step]] = [
    ("data", step_data),
    ("teacher", step_teacher),
    ("student-nokd", step_student_nokd),
    ("student-kd", step_student_kd),
    ("evaluate", step_evaluate),
    *DEPLOY_STEPS,  # export, quantize, compile, bundle, classify, profile
]


def prepare_workdir(workdir: Path) -> None:
    """Reuse a previous demo's directory (its runs are replaced); refuse any other non-empty one."""
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).is_file():
            raise ConfigError(f"{workdir} is not empty and holds no previous demo",
                              "choose an empty or new --workdir")
        for name, _ in STEPS:
            run = workdir / name
            if run.is_dir():
                shutil.rmtree(run)
    workdir.mkdir(parents=True, exist_ok=True)


def run_demo(state: DemoState, steps: list[tuple[str, Step]] | None = None) -> DemoState:
    """Run ``steps`` (default :data:`STEPS`) in order, timing each."""
    from cmkd_edge.fsutil import atomic_write_json

    prepare_workdir(state.workdir)
    atomic_write_json(state.workdir / MARKER, {"data": state.data, "status": "running"})
    for name, step in steps if steps is not None else STEPS:
        t0 = time.perf_counter()
        step(state)
        state.timings[name] = time.perf_counter() - t0
    atomic_write_json(state.workdir / MARKER, {
        "data": state.data, "status": "finished", "synthetic": state.synthetic, "rows": state.rows,
        "notes": state.notes, "timings_s": state.timings, "runs": {k: str(v) for k, v in state.runs.items()},
    })
    return state


def print_table(state: DemoState) -> None:
    """The closing summary: one row per model, plus what the data was."""
    from rich.table import Table

    from cmkd_edge.cli._options import table_console

    label = "SYNTHETIC data" if state.synthetic else f"data {state.data}"
    table = Table(title=f"cmkd-edge demo - {label} - test split")
    cols = list(state.rows[0]) if state.rows else []
    for c in cols:
        table.add_column(c, justify="left" if c in ("model", "arch", "view") else "right", overflow="fold")
    for row in state.rows:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()])
    console = table_console()
    console.print(table)
    print_artifacts(state, console)
    for note in state.notes:
        console.print(f"note: {note}", markup=False)
    if state.synthetic:
        console.print("All numbers above come from SYNTHETIC data; they show the pipeline works, "
                      "not how well it does on real imagery.", markup=False)
    total = sum(state.timings.values())
    console.print("steps: " + ", ".join(f"{k} {v:.0f}s" for k, v in state.timings.items())
                  + f"; total {total:.0f}s; runs in {state.workdir}", markup=False)


@click.command("demo")
@click.option("--workdir", default="cmkd-demo", show_default=True, type=click.Path(file_okay=False),
              help="Where the runs go (a previous demo there is replaced).")
@click.option("--data", default=None, metavar="PATH", help="Dataset to use instead of the synthetic default.")
@click.option("--epochs", default=12, show_default=True, type=int, help="Epochs of each training run.")
@device_option
@click.option("--quiet", "-q", is_flag=True, help="Only the final table.")
@click.option("--json", "as_json", is_flag=True, help="Print rows, notes and timings as JSON.")
def demo(workdir: str, data: str | None, epochs: int, device: str, quiet: bool, as_json: bool) -> None:
    """Train a teacher, distil a student and evaluate both, on synthetic data by default.

    The synthetic default pairs optical patches with real-looking SAR patches of the same scene:
    the teacher sees all 13 optical bands, the student sees SAR only. With --data, a dataset without
    a SAR source gives the student simulated SAR (sar-sim), reported as such.

    \b
    Example:
      cmkd-edge demo --workdir runs/demo
    """
    state = DemoState(workdir=Path(workdir), data=check_data_path(data), device=device,
                      quiet=quiet or as_json, epochs_teacher=epochs, epochs_student=epochs)
    run_demo(state)
    if as_json:
        click.echo(json.dumps({"synthetic": state.synthetic, "rows": state.rows, "notes": state.notes,
                               "artifacts": state.results.get("artifacts", []),
                               "scene": state.results.get("scene"),
                               "timings_s": state.timings}, indent=2))
        return
    print_table(state)
