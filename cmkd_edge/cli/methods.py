"""``cmkd-edge match``, ``cmkd-edge mfh synthetic`` and ``cmkd-edge diagnose`` (the papers' tools).

Click and stdlib only at module top; torch and the library are imported inside the command bodies.
"""

from __future__ import annotations

import json

import click


@click.command("match")
@click.option("--data", "data", default=None, help="Dataset path (EuroSAT-MS, BigEarthNet, paired); default synthetic.")
@click.option("--teacher-view", default="ms", show_default=True, help="The teacher's view.")
@click.option("--student-view", default="rgb", show_default=True, help="The student's view.")
@click.option("--split", default="train", show_default=True, help="Split whose pairs train the matcher.")
@click.option("--split-file", default=None, help="A split.csv to reuse (e.g. the teacher run's).")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(1), help="Matcher epochs.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Matcher file to write (.pt).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def match(
    data: str | None,
    teacher_view: str,
    student_view: str,
    split: str,
    split_file: str | None,
    epochs: int,
    seed: int,
    out: str,
    as_json: bool,
) -> None:
    """Train SemBridge's CLIP-style matcher on paired views and save it.

    The file is used by `distill --method sembridge --method-opt matcher=FILE`. The summary reports
    how often the matcher's same-class pick is the sample's own pair (retrieval accuracy on SPLIT).

    \b
    Example:
      cmkd-edge match --data ../shared/data/eurosat_ms_200 --teacher-view ms --student-view rgb \\
          --epochs 20 --out runs/matcher.pt
    """
    from cmkd_edge.distill.losses.matching import train_matcher_on_data

    summary = train_matcher_on_data(data, teacher_view, student_view, out, split=split, split_file=split_file,
                                    epochs=epochs, seed=seed, log=None if as_json else click.echo)
    click.echo(
        json.dumps(summary, indent=2)
        if as_json
        else f"matcher written to {out} ({summary['n']} pairs, "
        f"own-pair rate {summary.get('own_pair_rate', float('nan')):.2f})"
    )


@click.group("mfh")
def mfh() -> None:
    """Modality Focusing Hypothesis tools (Xue et al., ICLR 2023).

    \b
    Example:
      cmkd-edge mfh synthetic --experiment gamma --seeds 20 --json gamma.json --plot gamma.png
    """


@mfh.command("synthetic")
@click.option(
    "--experiment",
    type=click.Choice(["gamma", "alpha", "table2"]),
    required=True,
    help="gamma = Fig. 2, alpha = Fig. 3, table2 = Table 2 (docs/methods.md, section 2).",
)
@click.option(
    "--teacher-mode",
    type=click.Choice(["gt", "alg1"]),
    default="gt",
    show_default=True,
    help="table2: modality-general (MG) teacher from the true shared columns or Algorithm 1's top-k2.",
)
@click.option("--seeds", default=20, show_default=True, type=click.IntRange(1), help="Seeds per sweep point.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the results here.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), default=None, help="Write a PNG figure here.")
@click.option("--steps", default=1000, show_default=True, type=click.IntRange(1), hidden=True)
@click.option("--threads", default=None, type=click.IntRange(1), help="torch threads (default: torch's).")
def synthetic(
    experiment: str,
    teacher_mode: str,
    seeds: int,
    json_out: str | None,
    plot_out: str | None,
    steps: int,
    threads: int | None,
) -> None:
    """Run one synthetic Gaussian experiment of the MFH paper, exactly as docs/methods.md section 2 specifies.

    Students are trained with the project's KD loss (LogitKD, T=1, reduction mean, weights 1,1).
    "MG" in the table and plot = modality-general teacher (its student: MG-KD).

    \b
    Example:
      cmkd-edge mfh synthetic --experiment table2 --teacher-mode alg1 --seeds 20 --json t2.json
    """
    import torch

    from cmkd_edge.mfh.experiments import run_experiment
    from cmkd_edge.mfh.report import format_table, save_result

    if threads:
        torch.set_num_threads(threads)
    res = run_experiment(experiment, seeds=seeds, teacher_mode=teacher_mode, steps=steps)
    save_result(res, json_out, plot_out)
    click.echo(format_table(res))
    click.echo(f"{len(res['seeds'])} seeds in {res['seconds']:.1f} s")


@click.command("diagnose")
@click.option("--teacher", required=True, help="Teacher checkpoint (file or run directory).")
@click.option("--data", default=None, help="Dataset with the student's view (and the teacher's, when paired); "
              "default synthetic.")
@click.option("--student-view", default=None,
              help="The student's view: predict whether distilling into it will pay (no student needed).")
@click.option("--student", default=None,
              help="A trained student checkpoint: also its dimensional-structure metrics and the teacher's "
                   "MFH saliency against it.")
@click.option("--labelled-fraction", default=None, type=float, metavar="F",
              help="Predict for the labels distill --labelled-fraction F --label-seed S would keep.")
@click.option("--label-seed", default=0, show_default=True, type=int)
@click.option("--labelled-ids", default=None, metavar="PATH", help="Predict for these labelled ids (labelled.csv).")
@click.option("--pairing", default="given", show_default=True, help="How student samples meet teacher samples.")
@click.option("--teacher-data", default=None, metavar="PATH", help="Unpaired teacher-modality samples.")
@click.option("--teacher-split-file", default=None, metavar="PATH", help="The split of --teacher-data.")
@click.option("--split-file", default=None, metavar="PATH", help="The student data split (default: the teacher run's).")
@click.option("--split", default="test", show_default=True, help="Split for the --student metrics.")
@click.option("--max-samples", default=500, show_default=True, type=click.IntRange(3))
@click.option("--repeats", default=20, show_default=True, type=click.IntRange(1), help="Permutations per unit (M).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
def diagnose(teacher: str, data: str | None, student_view: str | None, student: str | None,
             labelled_fraction: float | None, label_seed: int, labelled_ids: str | None, pairing: str,
             teacher_data: str | None, teacher_split_file: str | None, split_file: str | None, split: str,
             max_samples: int, repeats: int, seed: int, json_out: str | None) -> None:
    """Predict whether distilling a teacher into a student view will pay, before training one.

    With --student-view: from the teacher, the two views and the labels the student would have, a
    cheap probe in the student's view compares learning from the labels alone with learning through
    the teacher's supervision of the unlabelled samples ("prediction": help | no-help | unsure in
    the JSON, with the figures and the reasons). Minutes on 2 cores.

    With --student: the dimensional-structure metrics of both models (lower |off-diagonal
    correlation| and uniformity loss = better structure, arXiv 2306.15977) and the MFH saliency
    ranking of the teacher's units (near 1 = modality-general, arXiv 2206.06487).

    \b
    Example:
      cmkd-edge diagnose --teacher runs/radar --data ../shared/data/mstar_soc \\
          --student-view edge-radar:crop=88,scale=db,norm=mean,aug=crop+gain --labelled-fraction 0.05 \\
          --json runs/diagnose.json
      cmkd-edge diagnose --teacher runs/teacher --student runs/student --data ../shared/data/eurosat_ms_200
    """
    from cmkd_edge.cli._options import check_data_path
    from cmkd_edge.errors import ConfigError
    from cmkd_edge.fsutil import atomic_write_json

    if student_view is None and student is None:
        raise ConfigError("diagnose needs --student-view (predict) or --student (metrics of a trained pair)")
    data = check_data_path(data)
    res: dict = {}
    lines: list[str] = []
    if student_view is not None:
        from cmkd_edge.distill.prediction import format_prediction, predict_gain

        res = predict_gain(teacher, data, student_view, labelled_fraction=labelled_fraction, label_seed=label_seed,
                           labelled_ids=labelled_ids, seed=seed, split_file=split_file, pairing=pairing,
                           teacher_data=check_data_path(teacher_data), teacher_split_file=teacher_split_file,
                           log=lambda m: click.echo(m, err=True))
        lines.append(format_prediction(res))
    if student is not None:
        from cmkd_edge.distill.diagnostics import diagnose as run_diagnose
        from cmkd_edge.distill.diagnostics import format_diagnosis

        pair = run_diagnose(teacher, student, data, split=split, max_samples=max_samples, repeats=repeats, seed=seed)
        res = {**res, "pair": pair} if res else pair
        lines.append(format_diagnosis(pair))
    if json_out:
        atomic_write_json(json_out, res)
    click.echo("\n".join(lines))
