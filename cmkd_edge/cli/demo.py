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
#: The embedded default: synthetic optical/SAR pairs with large validation and test splits, so the
#: students' comparison and the INT8 gate are decided on 900 validation samples (96 could not resolve
#: the gate's 1-point limit: INT8 flips about 1.5 % of this student's answers both ways, and 420 left
#: the interval at [-1.6, +1.1]) and reported on 540 test samples; the 360 training samples keep the
#: demo a few minutes long.
DEMO_DATA = "synthetic:per_class=300,val=0.5,test=0.3"
#: The students see this share of the training labels: the few-label regime where distillation pays.
DEMO_FRACTION = 0.1
#: The students' arch: without depthwise convolutions, whose INT8 flips more answers (field notes).
STUDENT_ARCH = "resnet-narrow"


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
    labelled_fraction: float | None = DEMO_FRACTION
    chosen: str = "student-kd"
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


def _labels_note(state: DemoState) -> str:
    f = state.labelled_fraction
    return "every training label" if f is None else f"{f:.0%} of the training labels"


def step_student_nokd(state: DemoState) -> None:
    """The student without a teacher, on its few labels only: the baseline KD has to beat."""
    state.say(f"student without KD: {STUDENT_ARCH} on {state.student_view}, {_labels_note(state)}")
    _train(state, "student-nokd", view=state.student_view, arch=STUDENT_ARCH,
           epochs=state.epochs_student, lr=3e-3, batch_size=16, labelled_fraction=state.labelled_fraction)


def step_student_kd(state: DemoState) -> None:
    """Distil the teacher into the student: the same labels, and the teacher's signal on the rest."""
    state.say(f"student with KD: {STUDENT_ARCH} on {state.student_view} from the {state.teacher_view} teacher, "
              f"the same labels, the teacher teaching the unlabelled samples")
    same = {} if state.labelled_fraction is None else {"labelled_ids": str(state.runs["student-nokd"])}
    _train(state, "student-kd", view=state.student_view, arch=STUDENT_ARCH,
           epochs=state.epochs_student, lr=3e-3, batch_size=16, method="kd",
           teacher=str(state.runs["teacher"] / "best.pt"), **same)


def _val_correct(state: DemoState, name: str):
    """Per-sample correctness of a run's best.pt on the validation split (the data it trained on)."""
    import numpy as np

    from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint
    from cmkd_edge.data import open_dataset
    from cmkd_edge.distill.evaluation import predict, resolve_device
    from cmkd_edge.distill.loaders import make_loader

    ckpt = load_checkpoint(state.runs[name] / "best.pt")
    view = ckpt.meta.view
    ds = open_dataset(state.data, views=[view], split="val", seed=int(ckpt.meta.seed or 0),
                      split_file=state.runs[name] / "split.csv")
    dev = resolve_device(state.device)
    probs, y = predict(model_from_checkpoint(ckpt).to(dev), make_loader(ds, 128, False, 0), view, dev)
    return np.asarray(probs.argmax(1) == y), ckpt.meta.labels


def step_choose(state: DemoState) -> None:
    """Bundle the better student, judged on the validation split by paired outcomes (never on test)."""
    from cmkd_edge.runtime.metrics import paired_difference

    alone, labels = _val_correct(state, "student-nokd")
    taught, _ = _val_correct(state, "student-kd")
    d = paired_difference(alone, taught)
    state.chosen = "student-kd" if d["difference"] > 0 else "student-nokd"
    seen = "every training label" if labels is None else f"{labels.n_labelled} of {labels.n_train} training labels"
    ci = f"{d['difference'] * 100:+.1f} points [{d['lo'] * 100:+.1f}, {d['hi'] * 100:+.1f}]"
    why = (f"{state.chosen} is bundled: with {seen}, the distilled student against the student alone on "
           f"val (n={len(alone)}, paired): {ci}"
           + ("" if d["resolved_sign"] else " (no measurable difference; the point estimate decides)"))
    state.results["choice"] = {"chosen": state.chosen, "val_difference": d,
                               "labels": None if labels is None else labels.to_dict()}
    state.notes.append(why)
    state.say(f"choose: {why}")


def step_evaluate(state: DemoState) -> None:
    """Score every trained model on the test split with ``evaluate`` (what a user would run)."""
    from cmkd_edge.checkpoint import load_checkpoint
    from cmkd_edge.distill.evaluation import evaluate_checkpoint

    for name in ("teacher", "student-nokd", "student-kd"):
        if name not in state.runs:
            continue
        r = evaluate_checkpoint(state.runs[name] / "best.pt", state.data, "test", device=state.device)
        state.results[name] = r
        seen = load_checkpoint(state.runs[name] / "best.pt").meta.labels
        state.rows.append({"model": name + (" (bundled)" if name == state.chosen else ""), "arch": r["arch"],
                           "view": r["view"], "labels": "all" if seen is None else f"{seen.n_labelled}/{seen.n_train}",
                           "test accuracy": r.get("accuracy", r.get("map")),
                           "macro-F1": r["macro_f1"], "n": r["n"]})


#: The demo, in order: training, evaluation, then the deployment steps of ``demo_deploy``.
STEPS: list[tuple[str, Step]] = [
    ("data", step_data),
    ("teacher", step_teacher),
    ("student-nokd", step_student_nokd),
    ("student-kd", step_student_kd),
    ("choose", step_choose),
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
        "choice": state.results.get("choice"),
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
        table.add_column(c, justify="left" if c in ("model", "arch", "view", "labels") else "right",
                         overflow="fold")
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
@click.option("--labelled-fraction", default=DEMO_FRACTION, show_default=True, type=float,
              help="Share of the training labels the students see (1 = all of them).")
@device_option
@click.option("--quiet", "-q", is_flag=True, help="Only the final table.")
@click.option("--json", "as_json", is_flag=True, help="Print rows, notes and timings as JSON.")
def demo(workdir: str, data: str | None, epochs: int, labelled_fraction: float, device: str, quiet: bool,
         as_json: bool) -> None:
    """Train a teacher, distil a student with few labels, bundle the better student, deploy it.

    The synthetic default pairs optical patches with SAR patches of the same scene: the teacher
    sees all 13 optical bands and every label; the students see SAR and 10 % of the labels. One is
    trained on those labels alone, the other is distilled (the teacher teaches every training
    sample through its optical pair); the better on validation is exported, quantized behind the
    accuracy gate, compiled, packed, run on a scene and profiled. With --data, a dataset without a
    SAR source gives the student simulated SAR (sar-sim), reported as such.

    \b
    Example:
      cmkd-edge demo --workdir runs/demo
    """
    from cmkd_edge.data.labelled import check_fraction

    check_fraction(labelled_fraction)
    state = DemoState(workdir=Path(workdir), data=check_data_path(data) or DEMO_DATA, device=device,
                      quiet=quiet or as_json, epochs_teacher=epochs, epochs_student=epochs,
                      labelled_fraction=None if labelled_fraction >= 1 else labelled_fraction)
    run_demo(state)
    if as_json:
        click.echo(json.dumps({"synthetic": state.synthetic, "rows": state.rows, "notes": state.notes,
                               "choice": state.results.get("choice"),
                               "artifacts": state.results.get("artifacts", []),
                               "scene": state.results.get("scene"),
                               "timings_s": state.timings}, indent=2))
        return
    print_table(state)
