"""Quantization benchmark: accuracy, agreement, size and batch-1 latency per backend and precision.

A student distilled on the EuroSAT sample (teacher ``ms`` -> student ``bands:B02,B03,B04,B08``,
trained here with ``cmkd-edge train-teacher`` + ``distill`` unless ``--student`` is given) is
exported, quantized behind the accuracy gate (calibration: stratified train split; gate: val
split), compiled for OpenVINO, and every artifact is measured on the *test* split. Latency ratios
are measured side by side in one run: repeats interleave all variants of a backend, each repeat
times ``--runs`` batch-1 calls after a warm-up, and the table shows medians.

    nice python benchmarks/quantize.py [--workdir runs/bench-quantize] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import SHARED_DATA, machine_line, write_section  # noqa: E402

DATA = SHARED_DATA / "eurosat_ms_200"


def train(work: Path, epochs_teacher: int, epochs_student: int) -> Path:
    """Teacher on all 13 bands, student on four bands, distilled with KD (the trainer's CLI)."""
    cli = [str(Path(sys.executable).parent / "cmkd-edge")]
    student = work / "student"
    if (student / "best.pt").exists():
        return student / "best.pt"
    if not (work / "teacher" / "best.pt").exists():
        subprocess.run([*cli, "train-teacher", "--data", str(DATA), "--view", "ms", "--arch",
                        "resnet18-small", "--epochs", str(epochs_teacher), "--out",
                        str(work / "teacher"), "-q"], check=True)
    subprocess.run([*cli, "distill", "--teacher", str(work / "teacher"), "--data", str(DATA),
                    "--student-view", "bands:B02,B03,B04,B08", "--arch", "resnet-narrow",
                    "--arch-opt", "width=32", "--epochs", str(epochs_student), "--out",
                    str(student), "-q"], check=True)
    return student / "best.pt"


def ort_runner(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def ov_runner(path: Path, threads: int):
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                          "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    return lambda x: req.infer({0: x})[0].copy()


def size_kb(root: Path, files: list[str]) -> float:
    return sum((root / f).stat().st_size for f in files) / 1024


def measure(variants: dict[str, object], x1: np.ndarray, repeats: int, runs: int) -> dict[str, dict]:
    """Interleaved repeats; per repeat the median of ``runs`` timed calls; medians over repeats."""
    per: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():
        for _ in range(20):
            fn(x1)
    for _ in range(repeats):
        for name, fn in variants.items():
            t = []
            for _ in range(runs):
                s = time.perf_counter()
                fn(x1)
                t.append(time.perf_counter() - s)
            per[name].append(statistics.median(t) * 1e3)
    return {k: {"ms": statistics.median(v), "all": v} for k, v in per.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="runs/bench-quantize")
    ap.add_argument("--student", default=None, help="Use this checkpoint instead of training.")
    ap.add_argument("--epochs-teacher", type=int, default=15)
    ap.add_argument("--epochs-student", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-drop", type=float, default=1.0)
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"skipped: {DATA} not found (shared sample data)")

    from cmkd_edge.export.compile import compile_bundle
    from cmkd_edge.export.quantize import quantize_bundle
    from cmkd_edge.export.quantize.gate import top1
    from cmkd_edge.export.samples import load_raw_samples
    from cmkd_edge.export.student import export_checkpoint
    from cmkd_edge.runtime.manifest import read_manifest

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = Path(args.student) if args.student else train(work, args.epochs_teacher,
                                                         args.epochs_student)
    print(machine_line())
    bundle = export_checkpoint(ckpt, work / "bundle", data=str(DATA))
    log = print
    q_ort = quantize_bundle(bundle, backend="onnxruntime", precision="int8", calib_data=str(DATA),
                            calib_size=100, max_drop=args.max_drop, progress=log)
    q_ort16 = quantize_bundle(bundle, backend="onnxruntime", precision="fp16",
                              calib_data=str(DATA), max_drop=args.max_drop, progress=log)
    q_ov = quantize_bundle(bundle, backend="openvino", precision="int8", calib_data=str(DATA),
                           calib_size=100, max_drop=args.max_drop, progress=log)
    precs = ["fp32", "fp16"] + (["int8"] if q_ort["accepted_precision"] == "int8" else [])
    compile_bundle(bundle, target="openvino", precisions=tuple(precs))
    m = read_manifest(bundle).to_dict()
    arts = {a["id"]: a for a in m["artifacts"]}
    prov = read_manifest(bundle).provenance
    view = prov.get("view") or ""
    test = load_raw_samples(str(DATA), read_manifest(bundle).preprocess, view, "test")
    x1 = np.ascontiguousarray(test.x[:1])

    groups = {
        "onnxruntime": [("FP32", "onnx-fp32"), ("FP16 (ONNX float16)", "onnx-fp16"),
                        (f"INT8 QDQ {(q_ort['int8_types'] or {}).get('name', '')}", "onnx-int8")],
        "openvino": [("FP32 IR", "openvino-ir-fp32"), ("FP16-compressed IR", "openvino-ir-fp16"),
                     ("INT8 NNCF PTQ IR", "openvino-int8"), ("INT8 from the QDQ ONNX", "openvino-ir-int8")],
    }
    sections = [machine_line(), "",
                f"Student: {prov.get('arch')} on view `{view}` (deploy input: 13 raw bands, band "
                f"selection + normalisation in the graph), distilled with `{prov.get('method')}` "
                f"from a resnet18-small `ms` teacher on the 200-patch EuroSAT sample. Test split "
                f"n={len(test)} (one sample = {100 / len(test):.2f} points). Calibration: "
                f"stratified train split; gate: val split, max drop {args.max_drop} point(s). "
                f"Latency: batch 1, {args.threads} thread(s), median of {args.repeats} interleaved "
                f"repeats x {args.runs} runs; speed-up = FP32 median / variant median, same "
                "backend, same run.", ""]
    for backend, rows in groups.items():
        runner = ort_runner if backend == "onnxruntime" else ov_runner
        present = [(label, aid) for label, aid in rows if aid in arts]
        fns = {aid: runner(bundle / arts[aid]["path"], args.threads) for _, aid in present}
        logits = {aid: np.concatenate([fn(np.ascontiguousarray(test.x[i:i + 1]))
                                       for i in range(len(test))]) for aid, fn in fns.items()}
        lat = measure(fns, x1, args.repeats, args.runs)
        base = present[0][1]
        lines = [f"### {backend}", "",
                 "| artifact | test top-1 % | agreement with FP32 % | size KB | batch-1 ms | "
                 "speed-up vs FP32 |", "|---|---:|---:|---:|---:|---:|"]
        for label, aid in present:
            agree = float((logits[aid].argmax(1) == logits[base].argmax(1)).mean() * 100)
            lines.append(f"| {label} (`{aid}`) | {top1(logits[aid], test.labels):.1f} | "
                         f"{agree:.1f} | {size_kb(bundle, arts[aid]['files']):.0f} | "
                         f"{lat[aid]['ms']:.3f} | {lat[base]['ms'] / lat[aid]['ms']:.2f}x |")
        rec = q_ort if backend == "onnxruntime" else q_ov
        tried = "; ".join(f"{r['rung']}: val top-1 {r.get('top1', 'n/a')} "
                          f"(drop {r.get('drop', 'n/a')}, {'pass' if r.get('passed') else 'fail'})"
                          for r in rec["rungs"])
        lines += ["", f"Gate (INT8 request): accepted **{rec['accepted']}**; rungs tried: {tried}."]
        if backend == "onnxruntime":
            lines.append(f"FP16 request: accepted **{q_ort16['accepted']}**.")
        sections += lines + [""]
        print("\n".join(lines))
    write_section("quantize", "## Quantization (benchmarks/quantize.py)\n\n" + "\n".join(sections))


if __name__ == "__main__":
    main()
