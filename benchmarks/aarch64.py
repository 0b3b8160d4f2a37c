"""The MSTAR radar bundle on aarch64 (qemu-user) against this x86 host: the same labels? (issue 21)

A finished MSTAR run (``--student RUN_DIR``, e.g. the radar recipe's) is exported once and quantized
three ways: ONNX Runtime INT8 for this host (the default ``--for host``), ONNX Runtime INT8
``--for aarch64-dotprod`` (a Raspberry Pi 5 / Jetson Orin CPU), and OpenVINO INT8 (NNCF). Every
artifact then classifies the 2,425 test chips with the torch-free runtime here and inside the arm64
userland ``.ci/aarch64-userland.sh`` builds (Debian bookworm, PyPI's aarch64 wheels, a Cortex-A76
/proc/cpuinfo), through ``benchmarks/_aarch64_probe.py``. Reported (section ``aarch64``): per
artifact, the INT8 format and the device it was made for, test top-1 on each side, the share of
chips whose label is the same on both, the largest probability difference, and the gate record's
arithmetic. Emulated time means nothing, so no latency is reported.

    python benchmarks/aarch64.py --student RUN_DIR [--workdir runs/bench-aarch64] [--report-only]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import radar  # noqa: E402
from _aarch64 import in_arm, install_checkout, unavailable  # noqa: E402
from _report import ROOT as REPO  # noqa: E402
from _report import machine_line, write_section  # noqa: E402

PROBE = Path(__file__).resolve().parent / "_aarch64_probe.py"
#: (bundle, quantize options): each bundle holds FP32 and the INT8 artifacts of its options
BUNDLES = {"host": [("onnxruntime", ()), ("openvino", ())],
           "aarch64-dotprod": [("onnxruntime", ("--for", "aarch64-dotprod"))]}


def build(student: Path, work: Path) -> None:
    """Export once, then one copy per target device, quantized for it (resumable)."""
    base = work / "base"
    if not (base / "manifest.json").exists():
        radar.cli("export", str(student / "best.pt"), "--out", str(base), "--data", str(radar.DATA))
    for name, steps in BUNDLES.items():
        b = work / f"bundle-{name}"
        if (b / "quantized.ok").exists():
            continue
        shutil.rmtree(b, ignore_errors=True)
        shutil.copytree(base, b)
        for backend, opts in steps:
            radar.cli("quantize", str(b), "--backend", backend, "--precision", "int8", "--calib-data",
                      str(radar.DATA), "--max-drop", "1", "--qat-epochs", "0", *opts)
        (b / "quantized.ok").write_text("ok")


def chips(work: Path) -> tuple[Path, np.ndarray]:
    """The test chips copied under the work dir (the userland sees only it) and their labels."""
    files, labels = radar.test_chips()
    out = work / "test-chips"
    if not (out / "list.txt").exists():
        rel = [f.relative_to(radar.DATA).as_posix() for f in files]
        for f, r in zip(files, rel, strict=True):
            (out / r).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, out / r)
        (out / "list.txt").write_text("\n".join(rel) + "\n")
    return out, labels


def probe(where: str, work: Path, bundle: str) -> dict[str, Any]:
    """Probabilities of every artifact of ``bundle`` on the test chips, here or on aarch64."""
    out = work / f"probe-{bundle}-{where}.npz"
    if out.exists():
        z = np.load(out, allow_pickle=False)
        return {k: z[k] for k in z.files}
    if where == "x86":
        args = [sys.executable, str(PROBE), str(work / bundle), str(work / "test-chips"), str(out)]
        r = subprocess.run(args, capture_output=True, text=True)
    else:
        shutil.copyfile(PROBE, work / PROBE.name)
        r = in_arm(work, "python", f"/mnt/work/{PROBE.name}", f"/mnt/work/{bundle}", "/mnt/work/test-chips",
                   f"/mnt/work/{out.name}", timeout=6 * 3600)
    if r.returncode != 0:
        raise SystemExit(f"probe {bundle} on {where} failed:\n{r.stderr[-3000:]}")
    radar.log(f"probe {bundle} on {where}: {r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ''}")
    z = np.load(out, allow_pickle=False)
    return {k: z[k] for k in z.files}


def report(work: Path, labels: np.ndarray, arm_model: str) -> str:
    from cmkd_edge.runtime.manifest import read_manifest
    from cmkd_edge.runtime.metrics import paired_difference

    rows = ["| bundle | artifact | backend | INT8 format (made for) | gate arithmetic | x86 test top-1 % | "
            "aarch64 test top-1 % | same label | max abs prob diff | aarch64 - x86, points [95 % CI] |",
            "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for name in BUNDLES:
        bundle = f"bundle-{name}"
        x86, arm = probe("x86", work, bundle), probe("arm", work, bundle)
        m = read_manifest(work / bundle)
        for key in sorted(x86):
            backend, aid = key.split("__")
            art = m.artifact(aid)
            fmt, how = "", ""
            rec = m.quant(art.backend, "int8") if art.precision == "int8" else None
            if rec is not None:
                types = rec.extra.get("int8_types") or {}
                made = rec.target.profile if rec.target else "host (before --for)"
                fmt = f"{types.get('name', 'NNCF')} ({made})"
                how = rec.extra.get("gate_arithmetic", "native")
            a, b = x86[key].argmax(1), arm[key].argmax(1)
            d = paired_difference(a == labels, b == labels)
            rows.append(f"| {name} | `{aid}` | {backend} | {fmt or '-'} | {how or '-'} | "
                        f"{(a == labels).mean() * 100:.2f} | {(b == labels).mean() * 100:.2f} | "
                        f"{(a == b).mean() * 100:.2f} % ({int((a != b).sum())} differ) | "
                        f"{np.abs(x86[key] - arm[key]).max():.2g} | {d['difference'] * 100:+.2f} "
                        f"[{d['lo'] * 100:+.2f}, {d['hi'] * 100:+.2f}] |")
    return "\n".join([
        "## aarch64: the radar bundle on an ARM userland (benchmarks/aarch64.py)", "",
        machine_line(), "",
        f"aarch64 side: Debian bookworm arm64 under qemu-user, PyPI's aarch64 wheels, CPU model read as "
        f"`{arm_model}` (a Cortex-A76 /proc/cpuinfo: dot product, like a Raspberry Pi 5). MSTAR SOC "
        f"test split, n = {len(labels):,}, the same chip files on both sides, read by the runtime's chip "
        "reader; one bundle per target device, each exported from the same checkpoint. No timing: "
        "emulated time means nothing.", "", *rows, ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", required=True, metavar="RUN_DIR", help="finished MSTAR run (best.pt)")
    ap.add_argument("--workdir", default="runs/bench-aarch64")
    ap.add_argument("--data", default=str(radar.DATA))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    radar.DATA = Path(args.data)
    why = unavailable()
    if why:
        sys.exit(f"error: {why}")
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        build(Path(args.student), work)
        install_checkout(REPO, work)
        r = in_arm(work, "pip", "install", "-q", "--no-index", "--find-links", "/wheels", "openvino")
        if r.returncode != 0:  # OpenVINO's rows are then left out, with the probe's word why
            radar.log(f"openvino not installed in the userland: {r.stderr.strip()[-300:]}")
    _, labels = chips(work)
    r = in_arm(work, "python", "-c", "import cmkd_edge.runtime.device as d; print(d.cpu_info()['model'])")
    write_section("aarch64", report(work, labels, r.stdout.strip() or "?"))


if __name__ == "__main__":
    main()
