"""``cmkd-edge evaluate``: score a checkpoint on a split; a rich table or JSON."""

from __future__ import annotations

import json
from typing import Any

import click

from cmkd_edge.cli._options import check_data_path, device_option, json_option


@click.command("evaluate")
@click.argument("checkpoint", metavar="CHECKPOINT")
@click.option("--data", default=None, metavar="PATH",
              help="Dataset to score on. Default: the data the checkpoint was trained on.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--view", default=None,
              help="Score on another view with the same bands and units (e.g. sar for a sar-sim model).")
@click.option("--batch-size", default=128, show_default=True, type=int)
@device_option
@json_option
def evaluate(checkpoint: str, data: str | None, split: str, view: str | None, batch_size: int,
             device: str, as_json: bool) -> None:
    """Score CHECKPOINT (a .pt file or a run directory) on a split of the data.

    Multi-class: accuracy, macro-F1, per-class accuracy, confusion matrix, expected calibration
    error (15 bins). Multi-label: micro/macro F1 and mAP. The run's split.csv is reused when it sits
    next to the checkpoint.

    \b
    Example:
      cmkd-edge evaluate runs/student/best.pt --data data/eurosat --split test --json
    """
    from cmkd_edge.distill.evaluation import evaluate_checkpoint

    report = evaluate_checkpoint(checkpoint, check_data_path(data), split, view, batch_size, device)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    print_report(report)


def print_report(r: dict[str, Any]) -> None:
    """Rich tables: the scalar metrics, then per-class scores (and the confusion matrix)."""
    from rich.table import Table

    from cmkd_edge.cli._options import table_console

    console = table_console()
    synth = " (SYNTHETIC data)" if r.get("synthetic") else ""
    console.print(f"{r.get('checkpoint')}: {r.get('arch')} on view {r.get('view')}, data {r.get('data')}, "
                  f"{r.get('split')} split, n={r['n']}{synth}", markup=False, soft_wrap=True)
    head = Table()
    head.add_column("metric", overflow="fold")
    head.add_column("value", justify="right")
    keys = ("accuracy", "macro_f1", "ece") if r["task"] == "multiclass" else ("map", "micro_f1", "macro_f1")
    for k in keys:
        head.add_row(k, f"{r[k]:.4f}")
    console.print(head)
    per = r.get("per_class_accuracy") or r.get("per_class_ap") or {}
    label = "accuracy" if "per_class_accuracy" in r else "AP"
    cls = Table(title=f"per-class {label}")
    cls.add_column("class", overflow="fold")
    cls.add_column(label, justify="right")
    for name, v in per.items():
        cls.add_row(name, "-" if v is None else f"{v:.3f}")
    console.print(cls)
    if "confusion_matrix" in r and len(r["class_names"]) <= 20:
        cm = Table(title="confusion matrix", caption="rows: true, columns: predicted")
        cm.add_column("", overflow="fold")
        for i in range(len(r["class_names"])):
            cm.add_column(str(i), justify="right")
        for i, (name, row) in enumerate(zip(r["class_names"], r["confusion_matrix"], strict=True)):
            cm.add_row(f"{i} {name}", *[str(v) for v in row])
        console.print(cm)
