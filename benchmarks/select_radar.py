"""Choosing a deployment on MSTAR: 4 distilled radar students, every artifact x backend x threads, two budgets.

Students of different size (``aconv`` at widths 8 and 16 on 88x88, ``mobilenetv2`` at width 0.5 on
88x88 and 1.4 on 112x112, the radar recipe ``chip:crop=N,scale=db,norm=mean,aug=crop+gain``) are
distilled (``--method kd``) from a radar teacher, exported, quantized to INT8 for ONNX Runtime and
OpenVINO behind the gate (``--max-drop 1``), compiled to OpenVINO IR, then ``cmkd-edge select`` runs on
all of them, through the CLI a user runs:

1. once without a budget (every candidate measured: accuracy on the validation split, n=275, with
   95 % intervals; end-to-end p99 at batch 1 with 1 and 2 threads; RSS added; size);
2. under a p99 budget that excludes every FP32 candidate on this machine (halfway between the
   fastest FP32 p99 and the fastest gated INT8 p99) and ``--max-drop 1``: the choice must be a
   quantized candidate whose drop is inside the budget;
3. again under another budget (``--max-size-mb``): answered from the cache (its wall time shown);
4. under an impossible budget: exit 1 and the binding constraint.

The front (accuracy against p99, marker area = size, the chosen point ringed) goes to
``docs/select_radar.png`` and the table to the ``select-radar`` section of docs/benchmarks.md.
Runs are resumable (a finished student or chain is reused).

    nice python benchmarks/select_radar.py --teacher runs/bench-radar/student-s0 \\
        [--workdir runs/bench-select] [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, SHARED_DATA, machine_line, write_section  # noqa: E402

DATA = SHARED_DATA / "mstar_soc"
CLI = str(Path(sys.executable).parent / "cmkd-edge")
#: name -> (arch, arch options, crop): small to large
STUDENTS = {
    "aconv-w8": ("aconv", {"width": 8}, 88),
    "aconv-w16": ("aconv", {"width": 16}, 88),
    "mnv2-w05": ("mobilenetv2", {"width_mult": 0.5}, 88),
    "mnv2-w14": ("mobilenetv2", {"width_mult": 1.4}, 112),
}


def log(msg: str) -> None:
    print(f"[select_radar {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cli(*args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    log("cmkd-edge " + " ".join(args))
    out = subprocess.run([CLI, *args], capture_output=True, text=True)
    if out.returncode not in ok:
        raise SystemExit(f"cmkd-edge {' '.join(args)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return out


def student(work: Path, name: str, teacher: Path, epochs: int) -> Path:
    arch, opts, crop = STUDENTS[name]
    run = work / "students" / name
    summary = run / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("status") == "finished":
        return run
    view = f"chip:crop={crop},scale=db,norm=mean,aug=crop+gain"
    cli("distill", "--teacher", str(teacher), "--data", str(DATA), "--student-view", view, "--arch", arch,
        *[a for k, v in opts.items() for a in ("--arch-opt", f"{k}={v}")], "--method", "kd",
        "--epochs", str(epochs), "--lr", "3e-3", "--warmup-epochs", str(min(1, epochs - 1)), "--quiet",
        *(["--resume"] if (run / "last.pt").exists() else []), "--out", str(run))
    return run


def chain(run: Path, bundle: Path, max_drop: float) -> Path:
    """export -> INT8 for ONNX Runtime and OpenVINO (gate on val) -> OpenVINO IR; a done chain is kept."""
    done = bundle.parent / f"{bundle.name}.chain.ok"
    if done.exists():
        return bundle
    cli("export", str(run / "best.pt"), "--out", str(bundle), "--data", str(DATA), "--force")
    accepted = {}
    for backend in ("onnxruntime", "openvino"):
        out = cli("quantize", str(bundle), "--backend", backend, "--precision", "int8", "--calib-data", str(DATA),
                  "--max-drop", str(max_drop), "--json").stdout
        start = 0 if out.startswith("{") else out.find("\n{") + 1  # NNCF may print before the JSON
        accepted[backend] = json.JSONDecoder().raw_decode(out[start:])[0].get("accepted_precision")
    cli("compile", str(bundle), "--target", "openvino", "--precision", "fp32",
        *(["--precision", "int8"] if accepted["onnxruntime"] == "int8" else []))
    done.write_text(json.dumps(accepted))
    return bundle


def select(bundles: list[Path], out: Path, *budget: str,
           ok: tuple[int, ...] = (0,)) -> tuple[dict[str, Any], float, str]:
    """``cmkd-edge select --json``: (the decision, its wall time, the last stderr line)."""
    t = time.perf_counter()
    res = cli("select", *map(str, bundles), "--data", str(DATA), "--split", "val", "--threads", "1,2",
              "--out", str(out), "--json", *budget, ok=ok)
    return json.loads(res.stdout), time.perf_counter() - t, res.stderr.strip().splitlines()[-1] if res.stderr else ""


def front_png(sel: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    p = sel["budget"]["percentile"]
    colours = {"fp32": "#1f77b4", "fp16": "#2ca02c", "int8": "#d62728"}
    fig, ax = plt.subplots(figsize=(8, 5))
    top = max(c["size_mb"] for c in sel["candidates"]) or 1.0
    for c in sel["candidates"]:
        ax.scatter(c["latency_ms"][p], c["accuracy"], s=20 + 500 * c["size_mb"] / top,
                   alpha=0.85 if c["pareto"] else 0.35, color=colours.get(c["precision"], "0.5"),
                   edgecolors="black" if c["pareto"] else "none")
    fr = sorted((c for c in sel["candidates"] if c["pareto"]), key=lambda c: c["latency_ms"][p])
    ax.plot([c["latency_ms"][p] for c in fr], [c["accuracy"] for c in fr], ":", color="black", label="Pareto front")
    if sel["chosen"]:
        c = next(c for c in sel["candidates"] if c["id"] == sel["chosen"])
        ax.scatter(c["latency_ms"][p], c["accuracy"], s=600, facecolors="none", edgecolors="#ff7f0e",
                   linewidths=2.2, label=f"chosen: {c['id']}")
    if sel["budget"].get("max_latency_ms"):
        ax.axvline(sel["budget"]["max_latency_ms"], color="#ff7f0e", linestyle="--", label=f"{p} budget")
    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.margins(x=0.08, y=0.12)  # the largest markers stay inside the axes
    ax.set_xlabel(f"{p} end-to-end latency at batch 1 (ms, log)")
    ax.set_ylabel(f"top-1 on val, % (n={sel['candidates'][0]['n']})")
    ax.set_title("MSTAR students: every artifact x backend x threads (area = size, colour = precision)", fontsize=9)
    ax.legend(fontsize=7, loc="best", markerscale=0.4, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table_row(k: dict[str, Any], chosen: str | None) -> str:
    """One candidate as a Markdown table row (the chosen one in bold)."""
    lo, hi = k["accuracy_interval"]
    drop = "-" if k["drop"] is None else (f"{k['drop']:+.2f} [{k['drop_interval'][0]:+.2f}, "
                                           f"{k['drop_interval'][1]:+.2f}]")
    mem = "n/a" if k["memory_mb"] is None else f"{k['memory_mb']:.1f}"
    fit = "fits" if k["fits"] else ", ".join(f["constraint"] for f in k["fails"])
    name = f"**{k['id']}**" if k["id"] == chosen else k["id"]
    lat = k["latency_ms"]
    return (f"| {name} | {k['precision']} | {k['threads']} | {k['accuracy']:.2f} [{lo:.2f}, {hi:.2f}] "
            f"({k['split']}, {k['n']}) | {drop} | {lat['p50']:.3f} | {lat['p99']:.3f} | {mem} | "
            f"{k['size_mb']:.3f} | {'yes' if k['pareto'] else ''} | {fit} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, required=True, help="a radar teacher run (e.g. radar.py's student-s0)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench-select")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--students", default=",".join(STUDENTS),
                    help=f"comma-separated subset of {', '.join(STUDENTS)} (a smoke run takes one)")
    args = ap.parse_args()
    names = [n.strip() for n in args.students.split(",") if n.strip()]
    if not names or any(n not in STUDENTS for n in names):
        raise SystemExit(f"--students {args.students!r}: choose among {', '.join(STUDENTS)}")
    if not DATA.exists():
        raise SystemExit(f"{DATA} is missing: this benchmark needs the MSTAR SOC chips")
    work = args.workdir
    bundles = [chain(student(work, n, args.teacher, args.epochs), work / "bundles" / n, args.max_drop)
               for n in names]
    sel_path = work / "bundles" / "selection.json"
    everything, t_all, _ = select(bundles, sel_path)
    fp32 = min(c["latency_ms"]["p99"] for c in everything["candidates"] if c["precision"] == "fp32")
    quant = [c for c in everything["candidates"] if c["precision"] == "int8" and c["drop"] is not None
             and c["drop"] <= args.max_drop]
    if not quant or min(c["latency_ms"]["p99"] for c in quant) >= fp32:
        raise SystemExit("no gated INT8 candidate is faster than FP32 here: a budget excluding FP32 would pick none")
    limit = round((fp32 + min(c["latency_ms"]["p99"] for c in quant)) / 2, 3)
    chosen, t_budget, _ = select(bundles, sel_path, "--max-latency-ms", str(limit), "--max-drop", str(args.max_drop))
    front_png(chosen, ROOT / "docs" / "select_radar.png")
    size_limit = sorted(c["size_mb"] for c in everything["candidates"])[len(everything["candidates"]) // 2]
    again, t_cached, _ = select(bundles, work / "selection-size.json", "--max-size-mb", f"{size_limit:.3f}",
                                "--max-drop", str(args.max_drop))
    none, _, error = select(bundles, work / "selection-none.json", "--max-latency-ms", "0.001", ok=(1,))
    c = next(c for c in chosen["candidates"] if c["id"] == chosen["chosen"])
    rows = ["| candidate | precision | threads | top-1 % [95 %] (val, n) | drop [95 %] | p50 ms | p99 ms | "
            "RSS added MiB | size MiB | front | under the p99 budget |",
            "|---|---|---:|---|---|---:|---:|---:|---:|---|---|"]
    rows += [table_row(k, chosen["chosen"]) for k in sorted(chosen["candidates"], key=lambda k: k["latency_ms"]["p99"])]
    body = "\n".join([
        "## Choosing a deployment on MSTAR (`cmkd-edge select`)", "", machine_line(), "",
        f"{len(names)} students distilled (kd, {args.epochs} epochs) from `{args.teacher}`, each exported, "
        f"quantized to INT8 for ONNX Runtime and OpenVINO behind the gate (--max-drop {args.max_drop}) and "
        f"compiled to OpenVINO IR: {len(chosen['candidates'])} candidates (artifact x backend x 1 and 2 threads).",
        "", f"Budget: p99 <= {limit} ms (halfway between the fastest FP32 p99, {fp32:.3f} ms, and the fastest gated "
        f"INT8 p99, so no FP32 candidate fits) and drop <= {args.max_drop} points. Chosen: **{c['id']}** "
        f"({c['precision']}, drop {c['drop']:+.2f} points). Measuring everything took {t_all:.0f} s; the budgeted "
        f"call {t_budget:.1f} s and a third with another budget (--max-size-mb {size_limit:.3f}) {t_cached:.1f} s "
        f"(the cache: {sum(k['cached'] for k in again['candidates'])} of {len(again['candidates'])} candidates). "
        f"An impossible budget (p99 <= 0.001 ms) exits 1: `{error[:300]}` (binding: {none['binding']}).", "",
        *rows, "", "![front](select_radar.png)", ""])
    write_section("select-radar", body)
    log(f"wrote the select-radar section; chosen {c['id']}")


if __name__ == "__main__":
    main()
