"""Baseline table on the EuroSAT-MS sample: CNN teacher, RGB student with/without KD, logistic regression.

Regenerates the "baseline" section of docs/benchmarks.md::

    nice python benchmarks/baseline.py            # ~10 min on 2 shared cores
    python benchmarks/baseline.py --quick         # 2 epochs, 1 seed: a smoke test of the script

Data: ``../shared/data/eurosat_ms_200`` (200 real patches, 10 classes), the fixed split of its
labels.csv (train 100 / val 40 / test 60). Every number is test accuracy of best-on-validation
checkpoints, mean +- sample std over seeds. Settings were chosen on the validation split only (see
TUNING below, which the report repeats).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _recipes import EUROSAT_COMMON as COMMON  # noqa: E402
from _recipes import EUROSAT_TEACHER as TEACHER  # noqa: E402
from _report import SHARED_DATA, machine_line, write_section  # noqa: E402

DATA = SHARED_DATA / "eurosat_ms_200"
STUDENT = dict(view="rgb", arch="resnet-narrow", epochs=40)
KD = dict(method="kd", temperature=4.0, kd_weight=1.0, ce_weight=1.0)
LOGREG_C = (0.1, 0.3, 1.0, 3.0, 10.0, 100.0)
#: What was tried for the teacher (validation accuracy, seed 0), so the choice is on record.
TUNING = [
    ("resnet18-small (width 32, 2-2-2-2), 30 epochs, batch 16, lr 2e-3", "0.600", "~250 s CPU"),
    ("resnet-narrow width 32 (1-1-1-1), 60 epochs, batch 16, lr 3e-3", "0.700", "~115 s CPU"),
    ("resnet-narrow width 16 (1-1-1-1), 60 epochs, batch 16, lr 3e-3 (chosen)", "0.800", "~75 s CPU"),
]


def band_features(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std of every patch (26 features) and the labels of ``split``."""
    from cmkd_edge.data import open_dataset

    ds = open_dataset(str(DATA), views=["ms"], split=split)
    x = ds.view_batch("ms").astype(np.float64)
    return np.concatenate([x.mean(axis=(2, 3)), x.std(axis=(2, 3))], axis=1), np.asarray(ds.labels)


def logistic_baseline() -> dict[str, Any]:
    """Standardised logistic regression; C picked on val (ties -> smaller C), refit on train, scored on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tr, va, te = band_features("train"), band_features("val"), band_features("test")

    def model(c: float):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))

    scores = {c: model(c).fit(*tr).score(*va) for c in LOGREG_C}
    best_c = max(LOGREG_C, key=lambda c: (scores[c], -c))
    test = model(best_c).fit(*tr).score(*te)
    x_all, y_all = np.concatenate([tr[0], va[0], te[0]]), np.concatenate([tr[1], va[1], te[1]])
    cv = cross_val_score(model(1.0), x_all, y_all, cv=5)
    return {"C": best_c, "val": scores[best_c], "test": float(test), "cv_mean": float(cv.mean()),
            "cv_std": float(cv.std())}


def run_cnn(out: Path, seed: int, spec: dict[str, Any], teacher: Path | None = None) -> dict[str, Any]:
    from cmkd_edge.distill.config import TrainConfig
    from cmkd_edge.distill.trainer import train

    cfg = TrainConfig(out=out, data=str(DATA), seed=seed, quiet=True, device="cpu",
                      teacher=str(teacher) if teacher else None, command="benchmarks/baseline.py",
                      **{**COMMON, **spec})
    s = train(cfg)
    return {"test": s["test"]["accuracy"], "val": s["best_val"], "seconds": s["seconds"]}


def _ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} +- {sd:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2 epochs, 1 seed; does not write the report")
    ap.add_argument("--workdir", default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    if not (DATA / "labels.csv").is_file():
        sys.exit(f"EuroSAT sample not found at {DATA}")
    import torch

    torch.set_num_threads(2)
    teacher, student = TEACHER, STUDENT
    seeds = list(range(1 if args.quick else args.seeds))
    if args.quick:
        teacher.update(epochs=2, warmup_epochs=0)
        student.update(epochs=2, warmup_epochs=0)
    t0 = time.perf_counter()
    logreg = logistic_baseline()
    print(f"logistic regression: C={logreg['C']} val {logreg['val']:.3f} test {logreg['test']:.3f} "
          f"(5-fold CV on all 200: {logreg['cv_mean']:.3f} +- {logreg['cv_std']:.3f})", flush=True)
    results: dict[str, list[dict[str, Any]]] = {"teacher": [], "nokd": [], "kd": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        for seed in seeds:
            t_dir = root / f"teacher-s{seed}"
            results["teacher"].append(run_cnn(t_dir, seed, teacher))
            results["nokd"].append(run_cnn(root / f"rgb-nokd-s{seed}", seed, student))
            results["kd"].append(run_cnn(root / f"rgb-kd-s{seed}", seed, {**student, **KD}, t_dir / "best.pt"))
            print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]['test']:.3f}" for k, v in results.items()), flush=True)
    total = time.perf_counter() - t0
    md = report(logreg, results, seeds, total)
    print(md)
    print(machine_line())
    if not args.quick:
        print(f"wrote {write_section('baseline', md)}")


def report(logreg: dict[str, Any], results: dict[str, list[dict[str, Any]]], seeds: list[int],
           total: float) -> str:
    def row(name: str, key: str, setting: str) -> str:
        r = results[key]
        return (f"| {name} | {setting} | {_ms([x['test'] for x in r])} | {_ms([x['val'] for x in r])} "
                f"| {statistics.mean(x['seconds'] for x in r):.0f} |")

    gap = statistics.mean(x["test"] for x in results["teacher"]) - logreg["test"]
    verdict = ("is level with (within noise of)" if abs(gap) < 0.06 else
               "clearly beats" if gap > 0 else "clearly trails")
    lines = [
        "## Baseline: EuroSAT-MS sample (200 real patches, fixed split 100/40/60)",
        "",
        f"Test accuracy of best-on-validation checkpoints, mean +- sample std over seeds {seeds}; "
        "the test split is scored once per run.",
        "",
        "| model | setting | test acc | val acc | s/run |",
        "|---|---|---|---|---|",
        row("teacher", "teacher", f"resnet-narrow on `ms` (13 bands), {TEACHER['epochs']} ep"),
        row("student, no KD", "nokd", f"resnet-narrow on `rgb`, {STUDENT['epochs']} ep"),
        row("student, KD from the ms teacher", "kd",
            f"resnet-narrow on `rgb`, {STUDENT['epochs']} ep, kd T={KD['temperature']}, weights 1/1, batchmean x T^2"),
        f"| logistic regression | per-band mean+std (26 features), C={logreg['C']} chosen on val "
        f"| {logreg['test']:.3f} (deterministic) | {logreg['val']:.3f} | - |",
        "",
        f"Teacher minus logistic regression on test: {gap * 100:+.1f} points "
        f"(requirement: no worse than -5). Logistic regression, 5-fold CV on all 200 patches "
        f"(the data README's protocol): {logreg['cv_mean']:.3f} +- {logreg['cv_std']:.3f}.",
        "",
        f"Settings (all CNN runs): AdamW lr {COMMON['lr']}, weight decay {COMMON['weight_decay']} (not on "
        f"norms/biases), batch {COMMON['batch_size']}, {COMMON['warmup_epochs']} warm-up epochs then cosine "
        "per step, flips + 90-degree rotations, per-band normalisation from the training split, CPU float32. "
        f"Whole script: {total / 60:.1f} min.",
        "",
        "Teacher choice, on the validation split (seed 0):",
        "",
        "| teacher tried | val acc | cost |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in TUNING],
        "",
        "resnet18-small (the ResNet-18 layout at width 32) overfits 100 training patches and costs 3x the "
        "CPU, so the teacher is the narrow ResNet (the same arch as the student: the gap between the rows is "
        "the modality). With 60 test patches one patch is 1.7 points, so differences under ~6 points are "
        f"noise: the teacher {verdict} the logistic baseline. "
        "To beat it clearly: more data (the full 27k-patch EuroSAT; 10 patches per "
        "class is the limiting factor), or feed the CNN the same prior the features encode - a "
        "spectral-index stem (NDVI/NDWI/NDBI channels) or a pooled-statistics branch concatenated to the "
        "embedding - plus longer training with stronger regularisation (mixup, label smoothing) tuned on "
        "a cross-validated split rather than 40 validation patches.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
