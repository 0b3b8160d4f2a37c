"""SemBridge ablation on the paired digits benchmark: which rung of the recipe costs accuracy (issue 11).

Rungs, each trained through the real trainer on the digits ``sar`` view from one teacher on ``rgb``,
with seeds 0..S-1 paired across rungs (same seed = same student init and data order):

1. ``kd``: logit KD with the project's defaults (CE 1, KD 1, T = 4, T^2).
2. ``kd-sbw``: ``kd`` with SemBridge's weights (0.3 CE, 0.4 KD, T = 3, no T^2).
3. ``sb-given-noalign``: ``sembridge`` with the true pairs and no alignment - the same loss as rung 2,
   and the script asserts equal test accuracy for every seed.
4. ``sb-given-coral``: + CORAL (reference layout: per-sample flattened patches, batch-independent scale).
5. ``sb-matched``: the matcher's pairs, no re-matching.
6. ``sb-paper``: the paper's full recipe (matcher + dynamic re-matching, schedule scaled to the run).

Then rungs 1, 2 and 6 again on all 1,797 digits. Reported: test accuracy mean +- std (n test images)
and paired differences between rungs (mean over seeds, 95 % t-interval over the seed-paired
differences; an interval holding zero = "no measurable difference").

Usage: ``nice python benchmarks/sembridge_ablation.py --part 600|1797|report [--seeds 10] [--epochs 12]``;
``--part 600`` and ``--part 1797`` write JSON under ``--work`` (they can run in parallel), ``--part
report`` writes section "sembridge-ablation" of docs/benchmarks.md.
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
from _report import ROOT, machine_line, t_interval, write_section  # noqa: E402

TRAIN_KW: dict[str, Any] = {"batch_size": 32, "lr": 2e-3}
SBW = {"ce_weight": 0.3, "kd_weight": 0.4, "temperature": 3.0, "t2": False}


def rungs(epochs: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """Rung name -> (method, method options). The re-matching schedule is scaled to ``epochs``."""
    e0 = max(1, epochs // 4)
    return {
        "kd": ("kd", {}),
        "kd-sbw": ("kd", dict(SBW)),
        "sb-given-noalign": ("sembridge", {"pairing": "given", "align": "none"}),
        "sb-given-coral": ("sembridge", {"pairing": "given"}),
        "sb-matched": ("sembridge", {"pairing": "matched", "rematch": False, "matcher_epochs": 10}),
        "sb-paper": ("sembridge", {"pairing": "matched", "rematch": True, "matcher_epochs": 10,
                                   "rematch_e0": e0, "rematch_de": e0, "rematch_emu": 1}),
    }


PARTS = {"600": (600, list(rungs(1))), "1797": (1797, ["kd", "kd-sbw", "sb-paper"])}


def run_part(part: str, seeds: int, epochs: int, teacher_epochs: int, work: Path) -> dict[str, Any]:
    import torch
    from distill import make_digits

    from cmkd_edge.distill.config import TrainConfig
    from cmkd_edge.distill.trainer import train

    torch.set_num_threads(1)
    n, names = PARTS[part]
    droot = work / f"digits{n}"
    if not (droot / "labels.csv").is_file():
        make_digits(droot, n=n)
    tdir = work / f"teacher{n}"
    if not (tdir / "best.pt").is_file():
        train(TrainConfig(out=tdir, data=str(droot), view="rgb", arch="resnet18-small", epochs=teacher_epochs,
                          seed=0, quiet=True, device="cpu", amp=False, **TRAIN_KW))
    tsum = json.loads((tdir / "summary.json").read_text())
    out: dict[str, Any] = {"n_images": n, "epochs": epochs, "teacher": tsum["test"], "rungs": {}}
    table = rungs(epochs)
    for name in names:
        method, opts = table[name]
        accs, extra = [], []
        for seed in range(seeds):
            rdir = work / f"abl{n}-{name}-{seed}"
            t0 = time.perf_counter()
            s = train(TrainConfig(out=rdir, data=str(droot), view="sar", arch="resnet-narrow",
                                  teacher=str(tdir / "best.pt"), method=method, method_options=dict(opts),
                                  epochs=epochs, seed=seed,
                                  quiet=method != "sembridge" or opts.get("pairing") != "matched",
                                  device="cpu", amp=False, **TRAIN_KW))
            accs.append(s["test"]["accuracy"] * 100)
            extra.append({"seconds": time.perf_counter() - t0, "n_test": s["test"].get("n")})
            print(f"[{n}] {name:18s} seed {seed}: {accs[-1]:.2f}% ({extra[-1]['seconds']:.0f} s)", flush=True)
        out["rungs"][name] = {"method": method, "options": opts, "test_accuracy": accs, "runs": extra}
        if name == "sb-given-noalign" and "kd-sbw" in out["rungs"]:
            ref = out["rungs"]["kd-sbw"]["test_accuracy"]
            assert accs == ref, f"sembridge(given, align=none) {accs} != kd with SemBridge's weights {ref}"
            print("assert ok: sembridge(given, no alignment) == kd with SemBridge's weights, every seed", flush=True)
    (work / f"ablation{n}.json").write_text(json.dumps(out, indent=1))
    return out


def _row(name: str, accs: list[float], n_test: Any) -> str:
    return f"| `{name}` | {statistics.mean(accs):.1f} ± {statistics.pstdev(accs):.1f} | {n_test} |"


def _diff(a: str, b: str, ra: list[float], rb: list[float]) -> str:
    mu, lo, hi = t_interval([y - x for x, y in zip(ra, rb, strict=True)])
    verdict = "no measurable difference" if lo <= 0 <= hi else ("better" if mu > 0 else "worse")
    return f"| `{b}` − `{a}` | {mu:+.1f} | [{lo:+.1f}, {hi:+.1f}] | {verdict} |"


def _kd_curve(work: Path, n: int, name: str, seeds: int) -> list[float]:
    """Mean training KD loss per epoch over the seeds of one rung (from each run's metrics.csv)."""
    import csv

    curves = []
    for seed in range(seeds):
        f = work / f"abl{n}-{name}-{seed}" / "metrics.csv"
        if f.is_file():
            with f.open() as fh:
                curves.append([float(r["train_kd"]) for r in csv.DictReader(fh)])
    if not curves:
        return []
    return [statistics.mean(c[i] for c in curves) for i in range(min(map(len, curves)))]


def pairing_notes(log: Path, n: int, seeds: int) -> str:
    """The matched rungs' pairing statistics, read from the benchmark's own log (the trainer's lines).

    Runs print in order: sb-matched seeds, then sb-paper seeds; only sb-paper re-matches.
    """
    import re

    if not log.is_file():
        return ""
    text = log.read_text()
    own = [int(v) for v in re.findall(r"pairing=matched, (\d+)% of students paired with their own", text)]
    rem = re.findall(r"re-matched at epoch (\d+), (\d+)% of pairs changed, (\d+)% paired with their own sample, "
                     r"(\d+) distinct teacher samples", text)
    out = []
    if own:
        out.append(f"matcher's static pairs: {statistics.mean(own):.0f}% of students paired with their own sample "
                   f"(mean over {len(own)} runs)")
    by_epoch: dict[int, list[tuple[int, int, int]]] = {}
    for e, ch, ow, di in rem:
        by_epoch.setdefault(int(e), []).append((int(ch), int(ow), int(di)))
    for e, rows in sorted(by_epoch.items()):
        out.append(f"re-match at epoch {e} ({len(rows)} runs): {statistics.mean(r[0] for r in rows):.0f}% of pairs "
                   f"changed, {statistics.mean(r[1] for r in rows):.0f}% then paired with their own sample, "
                   f"{statistics.mean(r[2] for r in rows):.0f} distinct teacher samples for the "
                   f"~{n * 0.6:.0f} training students")
    return "; ".join(out)


def report(work: Path) -> str:
    parts = ["## SemBridge ablation: which rung costs accuracy (issue 11)\n", machine_line() + "\n"]
    for n in (600, 1797):
        f = work / f"ablation{n}.json"
        if not f.is_file():
            parts.append(f"_{n} digits: not run._\n")
            continue
        r = json.loads(f.read_text())
        rg = r["rungs"]
        seeds = len(next(iter(rg.values()))["test_accuracy"])
        n_test = next(iter(rg.values()))["runs"][0].get("n_test")
        parts.append(
            f"### {n} digits ({seeds} paired seeds, {r['epochs']} student epochs; teacher `resnet18-small` on "
            f"`rgb`, test accuracy {r['teacher']['accuracy'] * 100:.1f}%)\n\n"
            "| rung | test accuracy % (mean ± std over seeds) | test images |\n|---|---|---|")
        parts.extend(_row(k, v["test_accuracy"], n_test) for k, v in rg.items())
        parts.append("\nPaired differences (same seed), mean and 95 % t-interval over seeds, accuracy points:\n\n"
                     "| comparison | mean | 95 % interval | reading |\n|---|---|---|---|")
        names = list(rg)
        for a, b in zip(names, names[1:], strict=False):
            parts.append(_diff(a, b, rg[a]["test_accuracy"], rg[b]["test_accuracy"]))
        if "sb-paper" in rg and "kd" in rg:
            parts.append(_diff("kd", "sb-paper", rg["kd"]["test_accuracy"], rg["sb-paper"]["test_accuracy"]))
        notes = pairing_notes(work.parent / f"abl{n}.log", n, seeds)
        if notes:
            parts.append(f"\nPairing (matched rungs): {notes}.")
        for name in ("sb-matched", "sb-paper", "kd-sbw"):
            curve = _kd_curve(work, n, name, seeds)
            if curve:
                parts.append(f"\nTraining KD loss per epoch, `{name}` (mean over seeds): "
                             + ", ".join(f"{v:.3f}" for v in curve) + ".")
        parts.append("")
    return "\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", required=True, choices=["600", "1797", "report"])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--teacher-epochs", type=int, default=15)
    ap.add_argument("--work", default=str(ROOT / "bench_runs" / "digits_work"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.seeds < 1 or args.epochs < 1:
        print("error: --seeds and --epochs must be >= 1", file=sys.stderr)
        raise SystemExit(2)
    if args.part == "report":
        write_section("sembridge-ablation", report(work))
        return
    run_part(args.part, args.seeds, args.epochs, args.teacher_epochs, work)


if __name__ == "__main__":
    main()
