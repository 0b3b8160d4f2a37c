"""The methods table on real radar: MSTAR SOC, teacher on the full chip, students on the edge-radar view.

Issue 11. The teacher is the radar benchmark's chip student (``benchmarks/radar.py``: ``aconv`` on
``chip:crop=88,scale=db,norm=mean,aug=crop+gain``, seed 0; pass ``--teacher RUN_DIR`` to reuse a finished one).
Students: the same arch on ``edge-radar:crop=88,...,factor=2,looks=1`` (block-averaged, single-look
speckled copies of the real chips), methods none/kd/fitnet/ds/sembridge/mfh with their defaults,
``--seeds`` seeds, paired (same seed = same data order and speckle realisations, one method changed).
best.pt is chosen on the validation split (n = 275) only and scored once on the 15-degree test split
(n = 2,425).

Reported (section "methods-radar" of docs/benchmarks.md): test accuracy mean +- std over seeds; the
paired difference to ``none`` and to ``kd``: mean over seeds with a 95 % t-interval over the seed-level
differences, and per seed the per-chip paired interval (Newcombe method 10,
``runtime.metrics.paired_difference``). An interval holding zero = "no measurable difference".

Runs are resumable (finished run directories are reused; a run another process is training is waited
for, so two processes can split the seeds: ``CMKD_BENCH_THREADS=1`` each). Cost on this 2-core machine:
a 20-epoch student takes 3-4 min alone on 2 threads and 10-15 min when two share the cores; ``mfh``
also trains its reference student to convergence. The full table is
1 + 6 x 5 runs; ``--methods`` / ``--seeds`` select a part.

    nice python benchmarks/methods_radar.py [--workdir runs/bench-methods-radar] [--teacher RUN_DIR]
        [--seeds 0,1,2,3,4] [--methods none,kd,fitnet,ds,sembridge,mfh] [--epochs 30] [--report-only]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import radar  # noqa: E402
from _report import SHARED_DATA, machine_line, t_interval, write_section  # noqa: E402

METHODS = ("none", "kd", "fitnet", "ds", "sembridge", "mfh")
#: Named non-default settings, run only when asked for (``--methods ...,mfh-ce``): method, options.
#: mfh-ce is the project's earlier MFH (docs/methods.md): half the units frozen, CE + KL at T = 4
#: (x T^2), the teacher's head retrained on the frozen features - is pure KL the cause of mfh's score?
VARIANTS = {"mfh-ce": ("mfh", {"ratio": "0.5", "ce_weight": "1", "temperature": "4", "reduction": "batchmean",
                               "t2": "true", "head_epochs": "10"})}


def seed_interval(diffs: list[float]) -> str:
    """Mean of seed-level paired differences (points) and its 95 % t-interval."""
    mu, lo, hi = t_interval([d * 100 for d in diffs])
    if len(diffs) < 2:
        return f"{mu:+.2f} (1 seed)"
    verdict = "" if lo > 0 or hi < 0 else ", no measurable difference"
    return f"{mu:+.2f} [{lo:+.2f}, {hi:+.2f}]{verdict}"


def report(work: Path, teacher: Path, seeds: list[int], methods: list[str], edge_view: str) -> str:
    from cmkd_edge.runtime.metrics import paired_difference

    runs = {(m, s): work / f"edge-{m}-s{s}" for m in methods for s in seeds}
    done = {k: v for k, v in runs.items() if radar.finished(v)}
    if not radar.finished(teacher) or not done:
        return "## Methods on MSTAR edge-radar (benchmarks/methods_radar.py)\n\n_No finished runs yet._\n"
    t_acc = float(radar.test_correct(teacher).mean())
    correct = {k: radar.test_correct(v) for k, v in done.items()}
    n_test = len(next(iter(correct.values())))
    lines = ["## Methods on MSTAR edge-radar (benchmarks/methods_radar.py)", "", machine_line(), "",
             f"Teacher `{teacher.name}` on the full chip, test top-1 {t_acc * 100:.2f} % (n = {n_test}). Students "
             f"on `{edge_view}`, methods with their defaults. Seeds paired across methods.", "",
             "| method | seeds | test top-1 % (n = 2,425 each) | − none: points [95 % t over seeds] | "
             "− kd: points [95 % t over seeds] |", "|---|---:|---:|---:|---:|"]
    for m in methods:
        ss = [s for s in seeds if (m, s) in correct]
        if not ss:
            lines.append(f"| `{m}` | 0 | pending | | |")
            continue
        accs = [float(correct[(m, s)].mean()) * 100 for s in ss]
        acc = f"{statistics.mean(accs):.2f} ± {statistics.pstdev(accs):.2f}"
        cells = []
        for ref in ("none", "kd"):
            pair = [s for s in ss if (ref, s) in correct]
            if m == ref or not pair:
                cells.append("–")
                continue
            cells.append(seed_interval([float(correct[(m, s)].mean() - correct[(ref, s)].mean()) for s in pair]))
        lines.append(f"| `{m}` | {len(ss)} | {acc} | {cells[0]} | {cells[1]} |")
    lines += ["", "Per seed, per-chip paired difference to `none` (Newcombe 95 %, n = 2,425 chips):", "",
              "| method | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---:|" * len(seeds)]
    for m in methods:
        if m == "none":
            continue
        cells = []
        for s in seeds:
            if (m, s) in correct and ("none", s) in correct:
                p = paired_difference(correct[("none", s)], correct[(m, s)])
                cells.append(f"{p['difference'] * 100:+.2f} [{p['lo'] * 100:+.2f}, {p['hi'] * 100:+.2f}]")
            else:
                cells.append("–")
        lines.append(f"| `{m}` | " + " | ".join(cells) + " |")
    lines += mfh_lines(work, seeds, [m for m in methods if m.startswith("mfh")])
    return "\n".join(lines) + "\n"


def mfh_lines(work: Path, seeds: list[int], variants: list[str]) -> list[str]:
    """Why mfh scores what it does: per seed, its reference student and the frozen-unit control
    (the teacher's training accuracy with the low-saliency / a random / the high-saliency set frozen
    to the whole-set mean), from each run's ``mfh_saliency.json``."""
    import json

    rows = []
    for m, s in ((m, s) for m in variants for s in seeds):
        f = work / f"edge-{m}-s{s}" / "mfh_saliency.json"
        if not f.is_file():
            continue
        d = json.loads(f.read_text())
        ref, ctl = d.get("reference_student", {}), d.get("frozen_control", {})
        rows.append(f"| `{m}` | {s} | {ref.get('epochs')} (best {ref.get('best_epoch')}) | "
                    f"{ref.get('val_agreement', float('nan')):.3f} | {len(d.get('frozen', []))}/"
                    f"{len(d.get('saliency', []))} | {ctl.get('low_saliency', float('nan')):.3f} | "
                    f"{ctl.get('random_mean_of_10', float('nan')):.3f} | "
                    f"{ctl.get('high_saliency', float('nan')):.3f} |")
    if not rows:
        return []
    return ["", "`mfh` per seed: the reference student (Algorithm 1, early-stopped on its fit to the teacher) "
            "and the teacher's training accuracy with units frozen to their mean (the control):", "",
            "| method | seed | reference epochs | its held-out agreement with the teacher | frozen units | "
            "teacher acc., low-saliency frozen | random set (mean of 10) | high-saliency frozen |",
            "|---|---:|---:|---:|---:|---:|---:|---:|", *rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="runs/bench-methods-radar")
    ap.add_argument("--teacher", default=None, metavar="RUN_DIR",
                    help="finished chip-view run to distil from (default: train WORKDIR/student-s0)")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--arch", default="aconv")
    ap.add_argument("--chip", default="scale=db,norm=mean,aug=crop+gain")
    ap.add_argument("--edge", default="factor=2,looks=1")
    ap.add_argument("--crop", type=int, default=88)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--data", default=str(SHARED_DATA / "mstar_soc"))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS and m not in VARIANTS]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        seeds = []
    if bad or not methods or not seeds or args.epochs < 1:
        what = f"unknown method(s) {bad}" if bad else "empty --methods/--seeds or --epochs < 1"
        print(f"error: {what} (methods: {', '.join(METHODS + tuple(VARIANTS))}; seeds: comma-separated "
              "integers)", file=sys.stderr)
        raise SystemExit(2)
    radar.DATA = Path(args.data)
    if not (radar.DATA / "labels.csv").is_file():
        print(f"error: {radar.DATA} has no labels.csv (MSTAR SOC chips expected)", file=sys.stderr)
        raise SystemExit(2)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    opts = f",{args.chip}" if args.chip else ""
    chip_view, edge_view = f"chip:crop={args.crop}{opts}", f"edge-radar:crop={args.crop}{opts},{args.edge}"
    teacher = Path(args.teacher) if args.teacher else work / "student-s0"

    def write() -> None:
        write_section("methods-radar", report(work, teacher, seeds, methods, edge_view))

    if args.report_only:
        write()
        return
    if not args.teacher:
        radar.train_run(teacher, chip_view, args, 0)
    elif not radar.finished(teacher):
        print(f"error: --teacher {teacher} is not a finished run (no summary.json with status finished)",
              file=sys.stderr)
        raise SystemExit(2)
    # seed-major order: a stopped benchmark still has complete paired rows for the first seeds
    for s in seeds:
        for m in methods:
            method, options = VARIANTS.get(m, (m, {}))
            radar.train_run(work / f"edge-{m}-s{s}", edge_view, args, s,
                            teacher=None if m == "none" else teacher / "best.pt", method=method,
                            method_options=options)
            write()


if __name__ == "__main__":
    main()
