"""MFH Algorithm 1 on a real teacher: does freezing the "low-saliency" units cost less than a random set?

Issue 11, defect 1. One trained teacher (digits: ``resnet18-small`` on the clean ``rgb`` view; EuroSAT:
the baseline recipe on ``ms``), one student architecture on the hard view (``sar`` / ``sar-sim``).
For each reference-student recipe and seed:

- ``before``: the reference student trained for a fixed ``--before-epochs`` (the old default, 2-3
  epochs), no hold-out;
- ``after``: trained to convergence, at most 100 epochs, early-stopped when its held-out MSE to the
  teacher's logits has not improved for 10 epochs (the fixed default);

Algorithm 1's saliency of the teacher's ``embed`` units against that reference student (M permutations
on the training split), then the teacher's TEST accuracy with a fraction of its units frozen to their
training-set mean: the lowest-saliency ones (what MFH freezes), the highest-saliency ones, and random
sets of the same size (20 draws). Also: Spearman correlation of the ranking between seeds, and with
the teacher's own unit importance (permutation saliency against the teacher's own outputs).

Usage: ``nice python benchmarks/mfh_real.py [--data digits|eurosat] [--seeds 3] [--repeats 10]``;
writes section "mfh-real" of docs/benchmarks.md and the JSON next to the run directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, SHARED_DATA, machine_line, write_section  # noqa: E402


def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation of two 1-d tensors (no ties expected)."""
    import torch

    ra = torch.argsort(torch.argsort(a)).double()
    rb = torch.argsort(torch.argsort(b)).double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra @ rb) / (ra.norm() * rb.norm()))


def prepare(name: str, work: Path, teacher_epochs: int) -> dict[str, Any]:
    """Train (or reuse) the teacher; return data path, views, archs and the teacher checkpoint."""
    from cmkd_edge.distill.config import TrainConfig
    from cmkd_edge.distill.trainer import train

    if name == "digits":
        from distill import make_digits

        data = work / "digits1797"
        if not (data / "labels.csv").is_file():
            make_digits(data, n=1797)
        spec = {"data": str(data), "tview": "rgb", "sview": "sar", "tarch": "resnet18-small",
                "sarch": "resnet-narrow", "kw": {"batch_size": 32, "lr": 2e-3}, "tepochs": teacher_epochs}
        tdir = work / "teacher1797"
    else:
        from _recipes import EUROSAT_COMMON, EUROSAT_TEACHER

        data = SHARED_DATA / "eurosat_ms_200"
        if not data.is_dir():
            print(f"error: {data} not found", file=sys.stderr)
            raise SystemExit(2)
        spec = {"data": str(data), "tview": "ms", "sview": "sar-sim", "tarch": EUROSAT_TEACHER["arch"],
                "sarch": "resnet-narrow", "kw": dict(EUROSAT_COMMON), "tepochs": EUROSAT_TEACHER["epochs"]}
        tdir = work / "eurosat-teacher"
    if not (tdir / "best.pt").is_file():
        train(TrainConfig(out=tdir, data=spec["data"], view=spec["tview"], arch=spec["tarch"], epochs=spec["tepochs"],
                          seed=0, quiet=True, device="cpu", amp=False, **spec["kw"]))
    spec["teacher"] = tdir / "best.pt"
    return spec


def run(name: str, seeds: int, repeats: int, ratios: list[float], before_epochs: int, work: Path) -> dict[str, Any]:
    import torch

    from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint
    from cmkd_edge.data import open_dataset
    from cmkd_edge.data.stats import band_stats
    from cmkd_edge.distill.dataset_tensors import batched_forward, collect_views
    from cmkd_edge.distill.losses.saliency import (
        frozen_accuracy,
        permutation_saliency,
        train_reference_student,
        unit_mask,
    )
    from cmkd_edge.models import build_model

    torch.set_num_threads(1)
    spec = prepare(name, work, 15)
    teacher = model_from_checkpoint(load_checkpoint(spec["teacher"])).eval()
    views = [spec["tview"], spec["sview"]]
    train_set = open_dataset(spec["data"], views=views, split="train", seed=0)
    test_set = open_dataset(spec["data"], views=views, split="test", seed=0)
    tr, ytr = collect_views(train_set, views)
    te, yte = collect_views(test_set, views)
    with torch.no_grad():
        t_logits, t_feats = batched_forward(teacher.forward_all, tr[spec["tview"]])
        te_logits, te_feats = batched_forward(teacher.forward_all, te[spec["tview"]])
    emb, emb_te = t_feats["embed"], te_feats["embed"]
    unit_mean = emb.mean(0)
    head = teacher.forward_head
    t_test = float((te_logits.argmax(1) == yte).float().mean())
    own = permutation_saliency(head, emb, t_logits, repeats, torch.Generator().manual_seed(0))
    m, s = band_stats(train_set, spec["sview"])
    n_cls = len(train_set.class_names)
    out: dict[str, Any] = {"data": name, "n_train": int(len(ytr)), "n_test": int(len(yte)), "units": int(emb.shape[1]),
                           "teacher_test_accuracy": t_test, "repeats": repeats, "recipes": {}}
    g = torch.Generator().manual_seed(123)
    rand = {str(r): [frozen_accuracy(head, emb_te, yte, unit_mask(own, r, "random", g), unit_mean) for _ in range(20)]
            for r in ratios}
    out["random"] = rand
    for recipe, kw in (("before", {"epochs": before_epochs, "patience": None}),
                       ("after", {"epochs": 100, "patience": 10})):
        rows = []
        for seed in range(seeds):
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            student = build_model(spec["sarch"], tr[spec["sview"]].shape[1], n_cls, mean=[float(v) for v in m],
                                  std=[float(v) for v in s])
            ref, fit = train_reference_student(student, tr[spec["sview"]], t_logits, ytr, seed=seed, **kw)
            with torch.no_grad():
                s_logits = batched_forward(ref, tr[spec["sview"]])
            sal = permutation_saliency(head, emb, s_logits, repeats, torch.Generator().manual_seed(seed))
            row = {"seed": seed, "fit": fit.__dict__, "saliency": sal.tolist(), "seconds": 0.0,
                   "spearman_vs_teacher_importance": spearman(sal, own), "frozen": {}}
            for r in ratios:
                row["frozen"][str(r)] = {
                    which: frozen_accuracy(head, emb_te, yte, unit_mask(sal, r, which), unit_mean)
                    for which in ("low", "high")
                }
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(f"[{name}] {recipe} seed {seed}: ref epochs {fit.epochs}, train acc {fit.train_accuracy:.3f}, "
                  f"agreement {fit.val_agreement:.3f}; frozen {row['frozen']}; rho(own) "
                  f"{row['spearman_vs_teacher_importance']:+.2f} ({row['seconds']:.0f} s)", flush=True)
        sals = [torch.tensor(r["saliency"]) for r in rows]
        rho = [spearman(sals[i], sals[j]) for i in range(len(sals)) for j in range(i + 1, len(sals))]
        out["recipes"][recipe] = {"settings": kw, "runs": rows, "spearman_between_seeds": rho}
    (work / f"mfh_real_{name}.json").write_text(json.dumps(out, indent=1))
    return out


def _ms(xs: list[float]) -> str:
    xs = [100 * x for x in xs]
    return f"{statistics.mean(xs):.1f} ± {statistics.pstdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def report(res: dict[str, Any]) -> str:
    name = res["data"]
    lines = [f"### {name}: teacher test accuracy {100 * res['teacher_test_accuracy']:.1f}% "
             f"(n = {res['n_test']} test images, {res['units']} `embed` units, saliency on {res['n_train']} "
             f"training images, M = {res['repeats']})\n",
             "| reference student | epochs run | its train accuracy | agreement with teacher (held-out) | "
             "ρ between seeds | ρ vs teacher's own importance | frozen | low-saliency frozen | random set | "
             "high-saliency frozen |", "|---|---|---|---|---|---|---|---|---|---|"]
    for recipe, r in res["recipes"].items():
        runs = r["runs"]
        desc = (f"{r['settings']['epochs']} epochs, no hold-out" if r["settings"]["patience"] is None
                else "≤ 100 epochs, early-stopped (patience 10) on held-out MSE to the teacher")
        rho = r["spearman_between_seeds"]
        rho_s = f"{statistics.mean(rho):.2f}" if rho else "–"
        own = statistics.mean(x["spearman_vs_teacher_importance"] for x in runs)
        agree = [x["fit"]["val_agreement"] for x in runs]
        agree_s = "–" if any(a != a for a in agree) else _ms(agree)
        for ratio in runs[0]["frozen"]:
            low = [x["frozen"][ratio]["low"] for x in runs]
            high = [x["frozen"][ratio]["high"] for x in runs]
            lines.append(
                f"| {recipe}: {desc} | {statistics.mean(x['fit']['epochs'] for x in runs):.0f} | "
                f"{_ms([x['fit']['train_accuracy'] for x in runs])} | {agree_s} | {rho_s} | {own:+.2f} | "
                f"{float(ratio):.0%} | {_ms(low)} | {_ms(res['random'][ratio])} | {_ms(high)} |")
    lines.append(f"\nAccuracies in % on the test split, mean ± std over {len(runs)} reference-student seeds "
                 "(random set: 20 draws). Frozen units are set to their training-set mean.\n")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", default=["digits"], choices=["digits", "eurosat"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--before-epochs", type=int, default=3)
    ap.add_argument("--work", default=str(ROOT / "bench_runs" / "digits_work"))
    ap.add_argument("--report-only", action="store_true", help="rewrite the section from the saved JSON")
    args = ap.parse_args()
    if args.seeds < 1 or args.repeats < 1:
        print("error: --seeds and --repeats must be >= 1", file=sys.stderr)
        raise SystemExit(2)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    parts = ["## MFH Algorithm 1 on a real teacher (issue 11, defect 1)\n", machine_line() + "\n",
             "The teacher's `embed` units are ranked by Algorithm 1 against a reference student (CE + MSE to the "
             "teacher's logits); `before` is the old recipe (a few epochs), `after` the fixed one (to convergence, "
             "early-stopped on the fit to the teacher). MFH freezes the low-saliency units; that must cost the "
             "teacher less than freezing a random set of the same size, and the high-saliency set the most.\n"]
    for name in args.data:
        saved = work / f"mfh_real_{name}.json"
        if args.report_only and saved.is_file():
            parts.append(report(json.loads(saved.read_text())))
        else:
            parts.append(report(run(name, args.seeds, args.repeats, [0.5, 0.75], args.before_epochs, work)))
    parts.append(f"Wall time {(time.perf_counter() - t0) / 60:.1f} min.\n")
    write_section("mfh-real", "\n".join(parts))


if __name__ == "__main__":
    main()
