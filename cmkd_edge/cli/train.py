"""``cmkd-edge train-teacher`` and ``cmkd-edge distill``: thin wrappers around the one trainer."""

from __future__ import annotations

import json
from typing import Any

import click

from cmkd_edge.cli._options import (
    check_data_path,
    coerce_arch_options,
    command_line,
    parse_key_values,
    training_options,
)

method_opt_option = click.option(
    "--method-opt", "method_options", multiple=True, callback=parse_key_values, metavar="KEY=VALUE",
    help="Method option parsed by the method's Config, e.g. reduction=mean (repeatable).",
)


def _run(params: dict[str, Any]) -> None:
    from cmkd_edge.distill.config import TrainConfig
    from cmkd_edge.distill.progress import summary_text
    from cmkd_edge.distill.trainer import train

    as_json = params.pop("as_json")
    params["data"] = check_data_path(params["data"])
    if params.get("teacher_data") is not None:
        params["teacher_data"] = check_data_path(params["teacher_data"])
    params["arch_options"] = coerce_arch_options(params["arch_options"])
    summary = train(TrainConfig(command=command_line(), **params))
    if summary["world_size"] > 1 and not _is_rank0():
        return
    click.echo(json.dumps(summary, indent=2, default=str) if as_json else summary_text(summary))


def _is_rank0() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


@click.command("train-teacher")
@click.option("--view", default=None,
              help="Input view: ms, rgb, sar, sar-sim, bands:B02,B03,B04,B08, chip, edge-radar "
                   "(default: the data's recipe: the radar recipe's chip view for radar chips, else ms).")
@click.option("--arch", default=None,
              help="Model (cmkd-edge list archs; default: the data's recipe: aconv without dropout for "
                   "radar chips, else resnet18-small; a named arch keeps its own options).")
@click.option("--method", default="none", show_default=True, hidden=True)
@method_opt_option
@training_options
def train_teacher(**params: Any) -> None:
    """Train a model from labels only (a teacher, or a no-KD baseline student).

    Writes last.pt every epoch, best.pt on the best validation score, metrics.csv, split.csv and
    summary.json to --out; the test split is scored once, at the end, with best.pt.

    \b
    Example:
      cmkd-edge train-teacher --data data/eurosat --view ms --arch resnet18 --epochs 30 --out runs/teacher
      cmkd-edge train-teacher --data ../shared/data/mstar_soc --out runs/radar   # the radar recipe
    """
    _run(params)


@click.command("distill")
@click.option("--teacher", required=True, metavar="CHECKPOINT", help="Teacher best.pt (or its run dir).")
@click.option("--teacher-view", default=None, help="Teacher's view (default: the one it was trained on).")
@click.option("--student-view", "view", default=None,
              help="Student's input view (default: the data's recipe: the radar chip view for radar "
                   "chips, else rgb).")
@click.option("--arch", default=None,
              help="Student model (cmkd-edge list archs; default: the data's recipe: aconv without "
                   "dropout for radar chips, else resnet-narrow; a named arch keeps its own options).")
@click.option("--method", default="kd", show_default=True, help="Distillation method (cmkd-edge list methods).")
@method_opt_option
@click.option("--temperature", default=None, type=float, help="KD temperature T (method default if unset).")
@click.option("--kd-weight", default=None, type=float, help="Weight of the KD term (method default if unset).")
@click.option("--ce-weight", default=None, type=float, help="Weight of the label loss (method default if unset).")
@click.option("--pairing", default="given", show_default=True,
              help="Which teacher-modality sample teaches each student sample: given (the sample's own), "
                   "random, class, sembridge (cmkd-edge list pairings).")
@click.option("--pairing-opt", "pairing_options", multiple=True, callback=parse_key_values, metavar="KEY=VALUE",
              help="Pairing option, e.g. matcher=runs/matcher.pt (repeatable).")
@click.option("--teacher-data", default=None, metavar="PATH",
              help="Teacher-modality samples that are not the student's (unpaired): the gallery an "
                   "unpaired --pairing draws from (its train split).")
@click.option("--teacher-split-file", default=None, metavar="PATH",
              help="The split of --teacher-data (a split.csv; rows marked 'unused' are left out).")
@training_options
def distill(**params: Any) -> None:
    """Distil a teacher on one view into a student on another view of the same samples.

    The teacher is frozen and in eval mode; its classes must match the data's. The student uses the
    teacher run's split.csv, so it is never tested on samples the teacher trained on.

    Few labels: training samples without a label (an unlabelled/ folder, empty labels, or those
    --labelled-fraction hides) learn only from the teacher through their paired sample; unpaired
    teacher data (--teacher-data) is paired by --pairing.

    \b
    Example:
      cmkd-edge distill --teacher runs/teacher/best.pt --data data/eurosat --teacher-view ms \\
          --student-view rgb --method kd --arch resnet-narrow --out runs/student
      cmkd-edge distill --teacher runs/radar/best.pt --data ../shared/data/mstar_soc \\
          --student-view edge-radar:crop=88,scale=db,norm=mean,aug=crop+gain --arch aconv \\
          --labelled-fraction 0.05 --out runs/few-labels
    """
    _run(params)
