"""``cmkd-edge evaluate``: score a checkpoint on a split; a rich table or JSON."""

from __future__ import annotations

import json
from typing import Any

import click

from cmkd_edge.cli._options import check_data_path, device_option, json_option


def _is_bundle(target: str) -> bool:
    from pathlib import Path

    p = Path(target)
    return (p.is_dir() and (p / "manifest.json").is_file()) or \
        p.name.lower().endswith((".tar.gz", ".tgz", ".zip"))


@click.command("evaluate")
@click.argument("checkpoint", metavar="CHECKPOINT|BUNDLE")
@click.option("--data", default=None, metavar="PATH",
              help="Dataset to score on (default: the data it was trained on). Data with its own "
                   "split (labels.csv split column) is scored on that split. For a bundle also a "
                   ".npz with arrays x (raw N,C,H,W) and labels: no torch needed.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--view", default=None,
              help="Score on another view with the same bands and units (e.g. sar for a sar-sim model).")
@click.option("--batch-size", default=128, show_default=True, type=int)
@click.option("--latency-iterations", default=30, show_default=True, type=click.IntRange(0),
              help="Bundle: batch-1 calls timed per artifact x backend (0: no latency).")
@click.option("--regate", is_flag=True,
              help="Bundle: re-run its accuracy gate here, per quantized artifact, and record the verdict "
                   "for this device class (in the cache, never in the bundle); precision auto then never "
                   "picks one that failed here.")
@device_option
@json_option
def evaluate(checkpoint: str, data: str | None, split: str, view: str | None, batch_size: int,
             latency_iterations: int, regate: bool, device: str, as_json: bool) -> None:
    """Score CHECKPOINT (a .pt file or run directory) or BUNDLE (directory or archive) on a split.

    Checkpoint, multi-class: accuracy, macro-F1, per-class accuracy, confusion matrix, expected
    calibration error (15 bins); multi-label: micro/macro F1 and mAP. The run's split.csv applies
    when the data is the run's own.

    Bundle: every artifact x backend this device can run, through the runtime's Classifier (the
    path a device runs): accuracy and macro-F1 (multi-label: micro/macro-F1 and mAP at the
    bundle's thresholds), n, agreement with FP32, the drop against FP32 with a 95 % paired
    interval, and batch-1 p50 latency. Every number is measured here, none copied from the
    manifest. Runs on the base install: a labelled dataset is read without torch, and --data FILE.npz
    takes saved arrays (x, labels).

    \b
    Examples:
      cmkd-edge evaluate runs/student/best.pt --data data/eurosat --split test --json
      cmkd-edge evaluate bundles/rgb-student --split test
      cmkd-edge evaluate rgb-student.tar.gz --data test_arrays.npz --json
      cmkd-edge evaluate radar.tar.gz --data chips/ --split val --regate   # on the board
    """
    from cmkd_edge.cli._extras import require

    if not _is_bundle(checkpoint):
        if regate:
            from cmkd_edge.errors import ConfigError

            raise ConfigError("--regate re-runs a bundle's accuracy gate; give a bundle, not a checkpoint")
        require("evaluate", modules=["torch"])
        from cmkd_edge.distill.evaluation import evaluate_checkpoint

        report = evaluate_checkpoint(checkpoint, check_data_path(data), split, view, batch_size, device)
        if as_json:
            click.echo(json.dumps(report, indent=2))
            return
        print_report(report)
        return
    report = evaluate_bundle_cli(checkpoint, data, split, latency_iterations, quiet=as_json, regate=regate)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    print_bundle_report(report)
    if regate:
        print_regate(report["regate"])


def _npz_samples(path: str) -> tuple[Any, Any]:
    import numpy as np

    from cmkd_edge.errors import DataError

    try:
        with np.load(path, allow_pickle=False) as z:
            return np.asarray(z["x"], np.float32), np.asarray(z["labels"])
    except KeyError as exc:
        raise DataError(f"{path} lacks array {exc}", "save raw inputs as x and labels as labels") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npz ({exc})") from None


def bundle_inputs(b: Any, data: str | None, split: str) -> tuple[Any, Any, dict[str, Any]]:
    """Raw labelled inputs of ``split`` for bundle ``b``: arrays from a .npz, or a dataset through
    the data layer's numpy half (no torch either way). Shared by ``evaluate``, ``select`` and
    ``report``.

    Raises:
        DataError: unreadable data, or a split whose samples lack labels (nothing to score).
    """
    import numpy as np

    from cmkd_edge.errors import DataError

    if data is not None and data.lower().endswith(".npz"):
        x, labels = _npz_samples(data)
        info: dict[str, Any] = {"data": data, "split": f"{split} (as given in {data})"}
    else:  # the data layer's numpy half: no torch needed (a device checks its own bundle)
        from cmkd_edge.export.samples import bundle_samples

        raw = bundle_samples(b, check_data_path(data), split)
        x, labels, info = raw.x, raw.labels, raw.info
    lab = np.asarray(labels)
    missing = int((lab < 0).sum()) if lab.ndim == 1 and lab.dtype.kind in "iu" else 0
    if missing:
        raise DataError(f"split {split!r} of {info.get('data')} has {missing} of {len(lab)} samples "
                        "without a label: nothing to score them against",
                        "score a labelled split (--split val or --split test)")
    return x, labels, info


def regate_here(b: Any, x: Any, labels: Any, split: str, data: str | None,
                known: dict[tuple[str, str], Any] | None = None) -> dict[str, Any]:
    """The bundle's accuracy gate re-run on this device for every quantized artifact it can run:
    the candidate's and FP32's logits on the same labelled inputs (FP32 on the candidate's backend
    where the bundle has it, else ONNX Runtime), judged by the gate's own rule and the limits the
    quantize run recorded; the verdicts go to the cache for this device class. ``known``: logits
    already computed on ``x`` per (backend, artifact), reused instead of running the model again."""
    import numpy as np

    from cmkd_edge.export.quantize.gate import judge_recorded
    from cmkd_edge.runtime.backends import available
    from cmkd_edge.runtime.classifier import Classifier
    from cmkd_edge.runtime.device_gates import device_class, record

    m = b.manifest
    x = np.asarray(x, dtype=np.float32)

    def logits(backend: str, aid: str) -> Any:
        if known is not None and (backend, aid) in known:
            return known[(backend, aid)]
        with Classifier.open(b, backend=backend, artifact=aid, probe=False) as clf:
            return np.concatenate([clf.logits(x[i:i + 64]) for i in range(0, len(x), 64)])

    fp32 = {a.backend: a.id for a in m.artifacts if a.precision == "fp32" and available(a.backend)}
    found: dict[str, dict[str, Any]] = {}
    refs: dict[str, Any] = {}
    for a in m.artifacts:
        if a.precision == "fp32" or not available(a.backend):
            continue
        ref_be = a.backend if a.backend in fp32 else "onnxruntime"
        if ref_be not in refs:
            refs[ref_be] = logits(ref_be, fp32[ref_be])
        rec = m.quant(a.backend, "int8") or m.quant(a.backend, a.precision)
        g = rec.gate if rec is not None else None
        v = judge_recorded(m, g, refs[ref_be], logits(a.backend, a.id), labels, split=split)
        found[f"{a.backend}:{a.id}"] = {
            "passed": bool(v["passed"]), "reason": v.get("reason"), "drop": v.get("drop"),
            "drop_lo": v.get("drop_lo"), "drop_hi": v.get("drop_hi"), "n": int(len(x)), "split": split,
            "data": data, "reference": f"{ref_be}:{fp32[ref_be]}", "max_drop": v["max_drop"]}
    path = record(b, found) if found else None
    return {"device_class": device_class(), "verdicts": found, "recorded": str(path) if path else None}


def print_regate(r: dict[str, Any]) -> None:
    click.echo(f"gate re-run on this device class ({r['device_class']}):")
    for key, v in r["verdicts"].items():
        click.echo(f"  {key:32s} {'PASS' if v['passed'] else 'FAIL':4s}  {v['reason']}")
    if not r["verdicts"]:
        click.echo("  no quantized artifact this device can run")
    elif r["recorded"]:
        click.echo(f"recorded in {r['recorded']} (precision auto reads it)")


def evaluate_bundle_cli(target: str, data: str | None, split: str, latency_iterations: int,
                        quiet: bool = False, regate: bool = False) -> dict[str, Any]:
    """Read the labelled samples (arrays, or a dataset through the data layer), then score the
    bundle with the runtime's :func:`cmkd_edge.runtime.evaluate.evaluate_bundle`."""
    from cmkd_edge.runtime.contract.bundle import open_bundle
    from cmkd_edge.runtime.evaluate import evaluate_bundle

    b = open_bundle(target)
    x, labels, info = bundle_inputs(b, data, split)
    say = None if quiet else (lambda msg: click.echo(f"evaluate: {msg}", err=True))
    logits: dict[tuple[str, str], Any] = {}
    report = evaluate_bundle(b, x, labels, split=split, data=str(info.get("data")),
                             latency_iterations=latency_iterations, progress=say, logits_out=logits)
    report["split_table"] = info.get("split_table")
    report["synthetic"] = info.get("synthetic")
    if regate:
        report["regate"] = regate_here(b, x, labels, split, str(info.get("data")), known=logits)
    return report


def print_bundle_report(r: dict[str, Any]) -> None:
    """One row per artifact x backend; the split and n in the title; notes below."""
    from rich.table import Table

    from cmkd_edge.cli._options import table_console

    console = table_console()
    ml = r["task"] == "multilabel"
    cols = (["micro_f1", "macro_f1", "map"] if ml else ["accuracy", "macro_f1"])
    synth = " (SYNTHETIC data)" if r.get("synthetic") else ""
    t = Table(title=f"{r['bundle']} - {r['split']} split, n={r['n']}, data {r['data']}{synth}; "
                    f"drop = FP32 minus artifact, points, 95% paired interval")
    for c in ["artifact", "backend", "precision", "gate", *cols, f"{cols[0]} 95% CI", "n", "agree %", "drop",
              "95% interval", "difference", "p50 ms (b=1)"]:
        t.add_column(c, justify="left" if c in ("artifact", "backend", "precision", "gate",
                                                  "difference") else "right", overflow="fold")
    for row in r["rows"]:
        iv = "" if "drop" not in row else f"[{row['drop_lo']:+.1f}, {row['drop_hi']:+.1f}]"
        ci = row.get("interval")
        t.add_row(row["artifact"], row["backend"], row["precision"], row["gate"],
                  *[f"{row[c]:.4f}" for c in cols], "-" if not ci else f"[{ci[0]:.4f}, {ci[1]:.4f}]", str(row["n"]),
                  f"{row.get('agreement_with_fp32', float('nan')):.1f}",
                  f"{row.get('drop', float('nan')):+.2f}", iv, row.get("difference", ""),
                  "-" if row["p50_ms_batch1"] is None else f"{row['p50_ms_batch1']:.3f}")
    console.print(t)
    for row in r["rows"]:
        if row.get("gate_note"):
            console.print(f"note: {row['artifact']} on {row['backend']}: {row['gate_note']}", markup=False)
    for s in r.get("skipped") or []:
        console.print(f"note: not run here: {s['artifact']} on {s['backend']}: {s['why']}", markup=False)


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
