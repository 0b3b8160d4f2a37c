"""INT8 speed on the radar student: where the time goes, per node, and why ONNX Runtime's ratio swung.

Input: a bundle with ``onnx-fp32``, ``onnx-int8`` and the OpenVINO artifacts (``benchmarks/radar.py``
builds one from the recipe's first seed). Four parts, written to the ``int8-speed`` section of
docs/benchmarks.md:

1. **Speed-up** of each INT8 artifact over FP32 on its backend at batch 1 and 8, one thread and
   every core: ``--repeats`` interleaved repeats (FP32, INT8, FP32, ...) of ``--calls`` calls on raw
   128x128 chips (preprocessing in the graph); the median of the per-repeat ratios and their range.
2. **ONNX Runtime's INT8 variants**, same protocol at batch 1 on one thread: everything quantized
   (before), the float stem with ONNX Runtime's QDQ propagation on, and the float stem with it off
   (the shipped artifact); plus the session settings suspected of the swing (denormals as zero, no
   memory arena).
3. **The swing across processes**: the batch-1 one-thread ratio in ``--processes`` fresh processes.
4. **Per node**: ONNX Runtime's profiler (kernel time per node) and OpenVINO's per-layer counters
   (``PERF_COUNT``), FP32 against INT8, batch 1, one thread.

    python benchmarks/int8_speed.py --bundle runs/bench-radar/chain/bundle [--repeats 9 --calls 200]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, write_section  # noqa: E402
from cmkd_edge.runtime.contract.records import ONNX_FP32, artifact_id, onnx_id  # noqa: E402

ONNX_INT8 = onnx_id("int8")
OV_FP32, OV_INT8, OV_IR_INT8 = artifact_id("openvino-ir", "fp32"), artifact_id("openvino", "int8"), \
    artifact_id("openvino-ir", "int8")

Fn = Callable[[], Any]


def chips(batch: int) -> np.ndarray:
    """Raw 8-bit chips, as the device feeds them (the graph crops and scales)."""
    return np.random.default_rng(0).gamma(1.0, 30.0, (batch, 1, 128, 128)).clip(0, 255).round().astype(np.float32)


def interleaved(fns: dict[str, Fn], repeats: int, calls: int) -> dict[str, list[float]]:
    """ms per call of each function: ``repeats`` rounds, every function once per round, in turn."""
    for fn in fns.values():
        for _ in range(20):
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            out[k].append((time.perf_counter() - t) / calls * 1e3)
    return out


def ratio_cell(ref: list[float], other: list[float]) -> tuple[str, float]:
    ratios = [a / b for a, b in zip(ref, other, strict=True)]
    med = statistics.median(ratios)
    return f"**{med:.2f}x** ({min(ratios):.2f}-{max(ratios):.2f})", med


def classifier_fn(bundle: Path, artifact: str, threads: int, x: np.ndarray) -> Fn:
    from cmkd_edge.runtime.classifier import Classifier

    backend = "onnxruntime" if artifact.startswith("onnx-") else "openvino"
    clf = Classifier.open(bundle, backend=backend, artifact=artifact, threads=threads)
    return lambda: clf.infer_logits(x)


def ort_fn(model: Path, threads: int, x: np.ndarray, disabled: tuple[str, ...] = (),
           config: dict[str, str] | None = None, arena: bool = True) -> Fn:
    import onnxruntime as ort
    from cmkd_edge.runtime.backends.onnxruntime import session_options

    so = session_options(threads)
    for k, v in (config or {}).items():
        so.add_session_config_entry(k, v)
    so.enable_cpu_mem_arena = arena
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(disabled) or None)
    name = sess.get_inputs()[0].name
    return lambda: sess.run(None, {name: x})


def part_speedup(bundle: Path, pairs: list[tuple[str, str]], args: argparse.Namespace) -> list[str]:
    rows = ["| INT8 artifact | FP32 reference | batch | threads | FP32 ms/call | INT8 ms/call "
            "| speed-up: median (range) |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for batch in (1, 8):
        for threads in (1, os.cpu_count() or 1):
            x = chips(batch)
            fns: dict[str, Fn] = {}
            for ref, art in pairs:
                fns[ref] = fns.get(ref) or classifier_fn(bundle, ref, threads, x)
                fns[art] = classifier_fn(bundle, art, threads, x)
            t = interleaved(fns, args.repeats, max(10, args.calls // batch))
            for ref, art in pairs:
                cell, _ = ratio_cell(t[ref], t[art])
                rows.append(f"| `{art}` | `{ref}` | {batch} | {threads} | {statistics.median(t[ref]):.3f} | "
                            f"{statistics.median(t[art]):.3f} | {cell} |")
    return rows


def variants(bundle: Path, scratch: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """The shipped ORT INT8 artifact three ways: everything INT8 (quantized here from the bundle's
    FP32 model, calibrated on 64 random chips: only its speed is read), and the shipped model with
    and without the ONNX Runtime transformers it records."""
    import onnx
    from cmkd_edge.export.onnx import preprocessing_nodes
    from cmkd_edge.export.quantize import ort as ortq
    from cmkd_edge.runtime.contract.bundle import open_bundle

    opened = open_bundle(bundle)
    art = next(a for a in opened.manifest.artifacts if a.id == ONNX_INT8)
    fp32 = bundle / "model.onnx"
    model = onnx.load(str(fp32))
    keep = preprocessing_nodes(model)
    full = scratch / "all-int8.onnx"
    ortq.quantize_int8(fp32, full, chips(64), "minmax", ortq.choose_int8_types(None), keep)
    return {"everything INT8 (before)": (full, ()),
            "float stem, QDQ propagation on": (bundle / art.path, ()),
            "float stem, QDQ propagation off (shipped)": (bundle / art.path, tuple(art.disabled_optimizers or ()))}


def part_variants(bundle: Path, v: dict[str, tuple[Path, tuple[str, ...]]], args: argparse.Namespace
                  ) -> list[str]:
    x = chips(1)
    fp32 = bundle / "model.onnx"
    shipped = v["float stem, QDQ propagation off (shipped)"]
    fns: dict[str, Fn] = {"FP32": ort_fn(fp32, 1, x)}
    for name, (path, dis) in v.items():
        fns[name] = ort_fn(path, 1, x, dis)
    fns["FP32, denormals as zero"] = ort_fn(fp32, 1, x, config={"session.set_denormal_as_zero": "1"})
    fns["shipped INT8, denormals as zero"] = ort_fn(shipped[0], 1, x, shipped[1],
                                                    config={"session.set_denormal_as_zero": "1"})
    fns["FP32, no memory arena"] = ort_fn(fp32, 1, x, arena=False)
    fns["shipped INT8, no memory arena"] = ort_fn(shipped[0], 1, x, shipped[1], arena=False)
    t = interleaved(fns, args.repeats, args.calls)
    rows = ["| ONNX Runtime model (batch 1, 1 thread) | ms/call (median) | vs FP32: median (range) |",
            "|---|---:|---:|"]
    for name, times in t.items():
        ref = t["FP32, denormals as zero"] if "denormals" in name else (
            t["FP32, no memory arena"] if "arena" in name else t["FP32"])
        cell = "(reference)" if name.startswith("FP32") else ratio_cell(ref, times)[0]
        rows.append(f"| {name} | {statistics.median(times):.3f} | {cell} |")
    return rows


def one_process_ratio(bundle: Path, calls: int) -> float:
    code = (f"import sys, statistics; sys.path.insert(0, {str(Path(__file__).parent)!r}); import int8_speed as s; "
            f"from pathlib import Path; b = Path({str(bundle)!r}); x = s.chips(1); "
            f"f = s.classifier_fn(b, {ONNX_FP32!r}, 1, x); i = s.classifier_fn(b, {ONNX_INT8!r}, 1, x); "
            f"t = s.interleaved({{'f': f, 'i': i}}, 5, {calls}); "
            f"print(statistics.median(a / c for a, c in zip(t['f'], t['i'])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def ort_profile(model: Path, disabled: tuple[str, ...], runs: int = 300) -> dict[str, tuple[str, float]]:
    """Mean kernel microseconds per node (ONNX Runtime's profiler), batch 1, one thread."""
    import onnxruntime as ort
    from cmkd_edge.runtime.backends.onnxruntime import session_options

    with tempfile.TemporaryDirectory() as tmp:
        so = session_options(1)
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "prof")
        sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(disabled) or None)
        name, x = sess.get_inputs()[0].name, chips(1)
        for _ in range(runs):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    agg: dict[str, float] = collections.defaultdict(float)
    ops: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"].removesuffix("_kernel_time")
            agg[node] += e["dur"] / runs
            ops[node] = e["args"].get("op_name", "?")
    return {n: (ops[n], us) for n, us in agg.items()}


def ov_profile(model: Path, runs: int = 300) -> dict[str, tuple[str, float]]:
    """Mean microseconds per executed layer (OpenVINO's PERF_COUNT), batch 1, one thread, f32 hint."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(model), "CPU", {"PERF_COUNT": True, "INFERENCE_NUM_THREADS": 1,
                                                      "INFERENCE_PRECISION_HINT": "f32",
                                                      "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    x = chips(1)
    agg: dict[str, float] = collections.defaultdict(float)
    kind: dict[str, str] = {}
    for _ in range(runs):
        req.infer({0: x})
        for p in req.profiling_info:
            if p.status == p.Status.EXECUTED:
                agg[p.node_name] += p.real_time.total_seconds() * 1e6 / runs
                kind[p.node_name] = f"{p.node_type} ({p.exec_type})"
    return {n: (kind[n], us) for n, us in agg.items()}


def profile_table(title: str, prof: dict[str, tuple[str, float]], top: int) -> list[str]:
    total = sum(us for _, us in prof.values())
    rows = [f"**{title}**: {total:.0f} us per call in all (sum of node times)", "",
            "| node | kind | us | share |", "|---|---|---:|---:|"]
    for node, (op, us) in sorted(prof.items(), key=lambda kv: -kv[1][1])[:top]:
        rows.append(f"| `{node[:48]}` | {op} | {us:.1f} | {100 * us / total:.1f} % |")
    return rows + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--processes", type=int, default=5)
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    bundle = Path(args.bundle)
    from cmkd_edge.runtime.contract.bundle import open_bundle

    ids = {a.id: a for a in open_bundle(bundle).manifest.artifacts}
    pairs = [(r, a) for r, a in ((ONNX_FP32, ONNX_INT8), (OV_FP32, OV_INT8), (OV_FP32, OV_IR_INT8))
             if r in ids and a in ids]
    t0 = time.time()
    lines = ["## INT8 speed on the radar student (benchmarks/int8_speed.py)", "", machine_line(), "",
             f"Bundle `{bundle}`. Latency of the runtime's call on raw 128x128 chips (crop, dB and "
             f"normalisation in the graph); {args.repeats} interleaved repeats, the speed-up is the median "
             "of the per-repeat ratios with their range in brackets.", "",
             "### Speed-up, every INT8 artifact", "", *part_speedup(bundle, pairs, args), ""]
    with tempfile.TemporaryDirectory() as tmp:
        v = variants(bundle, Path(tmp))
        lines += ["### ONNX Runtime: what made the ratio low and swing", "", *part_variants(bundle, v, args), ""]
        per = [one_process_ratio(bundle, args.calls) for _ in range(args.processes)]
        lines += [f"Batch 1, one thread, `onnx-int8` over `onnx-fp32` in {args.processes} fresh processes "
                  "(each a median of 5 interleaved repeats): " + ", ".join(f"{r:.2f}x" for r in per)
                  + f"; median {statistics.median(per):.2f}x, range {min(per):.2f}-{max(per):.2f}x.", ""]
        full = v["everything INT8 (before)"][0]
        art = ids[ONNX_INT8]
        lines += ["### Per node, batch 1, one thread", ""]
        lines += profile_table("ONNX Runtime FP32", ort_profile(bundle / "model.onnx", ()), args.top)
        lines += profile_table("ONNX Runtime INT8, everything quantized (before)", ort_profile(full, ()), args.top)
        lines += profile_table("ONNX Runtime INT8 as shipped (float stem, no QDQ propagation)",
                               ort_profile(bundle / art.path, tuple(art.disabled_optimizers or ())), args.top)
    for aid in (OV_FP32, OV_INT8):
        if aid in ids:
            lines += profile_table(f"OpenVINO `{aid}`", ov_profile(bundle / ids[aid].path), args.top)
    lines.append(f"Whole script: {(time.time() - t0) / 60:.1f} min.")
    body = "\n".join(lines)
    print(body)
    write_section("int8-speed", body)


if __name__ == "__main__":
    sys.exit(main())
