"""The MSTAR radar bundle on aarch64 (qemu-user) against this x86 host: the same labels? (issue 21)

A finished MSTAR run (``--student RUN_DIR``, e.g. the radar recipe's) is exported once and quantized
three ways: ONNX Runtime INT8 for this host (the default ``--for host``), ONNX Runtime INT8
``--for aarch64-dotprod`` (a Raspberry Pi 5 / Jetson Orin CPU), and OpenVINO INT8 (NNCF). Every
artifact then classifies the 2,425 test chips with the torch-free runtime here and inside the arm64
userland ``.ci/aarch64-userland.sh`` builds (Debian bookworm, PyPI's aarch64 wheels, a Cortex-A76
/proc/cpuinfo), through ``benchmarks/_aarch64_probe.py``. Reported (section ``aarch64``): per
artifact, the INT8 format and the device it was made for, test top-1 on each side, the share of
chips whose label is the same on both, the largest probability difference, and the gate record's
arithmetic. Then, inside the userland, each bundle's gate again (``evaluate BUNDLE --regate`` on
every 5th chip of the validation split, n = 55: OpenVINO runs about 6 s a chip emulated) and what
``classify`` with precision auto picks there before and after it. Emulated time means nothing, so
no latency is reported.

    python benchmarks/aarch64.py --student RUN_DIR [--workdir runs/bench-aarch64] [--report-only]
"""

from __future__ import annotations

import argparse
import csv
import json
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


#: every n-th chip of the validation split for the gate on aarch64 (n = 55 of 275): evaluate --regate
#: runs every artifact on every backend there, about 20 s a chip under qemu
VAL_STRIDE = 5


def val_set(work: Path) -> Path:
    """Every ``VAL_STRIDE``-th chip of the validation split as raw arrays and labels (.npz), the data
    ``evaluate --regate`` re-runs the gate on inside the userland."""
    from cmkd_edge.runtime.formats.chips import read_chips

    out = work / f"val-every{VAL_STRIDE}.npz"
    if out.exists():
        return out
    with open(radar.DATA / "labels.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "val"][::VAL_STRIDE]
    tmp = out.with_name(out.stem + ".part.npz")
    np.savez(tmp, x=read_chips([radar.DATA / r["file"] for r in rows]),
             labels=np.asarray([int(r["label"]) for r in rows]))
    tmp.replace(out)
    return out


def auto_pick(work: Path, bundle: str, chip: str) -> dict[str, Any]:
    """What ``classify`` with precision auto (fixed order: emulated time means nothing) picks on
    aarch64, and its selection record."""
    r = in_arm(work, "cmkd-edge", "classify", f"/mnt/work/{bundle}", f"/mnt/work/test-chips/{chip}",
               "--no-speed-probe", "--json", timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"classify {bundle} on aarch64 failed:\n{r.stderr[-3000:]}")
    doc = json.loads(r.stdout)
    return doc.get("selection", doc)


def regate_arm(work: Path, bundle: str) -> dict[str, Any]:
    """On aarch64: the auto pick, ``evaluate --regate`` on the validation split, the auto pick
    again (cached in the work dir)."""
    out = work / f"regate-{bundle}-arm.json"
    if out.exists():
        return json.loads(out.read_text())
    val = val_set(work)
    chip = (work / "test-chips" / "list.txt").read_text().split()[0]
    before = auto_pick(work, bundle, chip)
    r = in_arm(work, "cmkd-edge", "evaluate", f"/mnt/work/{bundle}", "--data", f"/mnt/work/{val.name}",
               "--split", "val", "--regate", "--latency-iterations", "0", "--json", timeout=6 * 3600)
    if r.returncode != 0:
        raise SystemExit(f"evaluate --regate {bundle} on aarch64 failed:\n{r.stderr[-3000:]}")
    doc = {"before": before, "regate": json.loads(r.stdout)["regate"], "after": auto_pick(work, bundle, chip)}
    tmp = out.with_suffix(".part")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(out)
    radar.log(f"regate {bundle} on aarch64: {sorted(doc['regate'].get('verdicts', {}))}")
    return doc


def regate_lines(work: Path) -> list[str]:
    """The regate table: each quantized artifact's verdict on aarch64 and what auto picks."""
    lines = [f"### The gate again, on aarch64 (`evaluate BUNDLE --regate`, every {VAL_STRIDE}th validation chip, "
             f"n = {len(range(0, 275, VAL_STRIDE))})", "",
             "| bundle | backend:artifact | passed on aarch64 | drop vs FP32 there, points [95 % CI] | why |",
             "|---|---|---|---:|---|"]
    picks = []
    for name in BUNDLES:
        doc = regate_arm(work, f"bundle-{name}")
        for key, v in sorted(doc["regate"].get("verdicts", {}).items()):
            d = "-" if v.get("drop") is None else f"{v['drop']:+.2f}"
            if v.get("drop_lo") is not None:
                d += f" [{v['drop_lo']:+.2f}, {v['drop_hi']:+.2f}]"
            lines.append(f"| {name} | `{key}` | {'yes' if v.get('passed') else '**no**'} | {d} | "
                         f"{v.get('reason', '')} |")
        for when in ("before", "after"):
            sel = doc[when]
            g = sel.get("device_gates", {})
            extra = "; ".join(f"{k.replace('_', ' ')}: {', '.join(v)}" for k, v in g.items()
                              if k in ("failed_here", "gate_does_not_hold_here"))
            picks.append(f"- {name}, {when} the regate: auto picks `{sel.get('chosen')}`"
                         + (f" ({extra})" if extra else ""))
    return [*lines, "", *picks, ""]


#: every n-th test chip per backend: OpenVINO's CPU plugin runs about 6 s a chip under qemu (ONNX
#: Runtime FP32 about 1 s, INT8 0.15 s), so it gets a stratum of the test split, stated in the table
STRIDE = {"onnxruntime": 1, "openvino": 20}


def artifacts(work: Path, bundle: str) -> list[tuple[str, str, str]]:
    """(backend, artifact id, sha256 of its model file) of the bundle."""
    from cmkd_edge.runtime.contract.manifest import read_manifest

    m = read_manifest(work / bundle)
    return [(a.backend, a.id, m.files[a.path]) for a in m.artifacts]


def probe(where: str, work: Path, bundle: str, backend: str, aid: str, sha: str) -> np.ndarray | None:
    """Probabilities of one artifact on the test chips (every ``STRIDE[backend]``-th), here or on
    aarch64; kept per artifact file (a byte-identical artifact of another bundle is run once).
    None: the backend is not installed on that side."""
    out = work / f"probe-{where}-{sha[:16]}-{backend}-s{STRIDE[backend]}.npz"
    if not out.exists():
        args = [f"{work / bundle}", str(work / "test-chips"), str(out), backend, aid, str(STRIDE[backend])]
        if where == "x86":
            r = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True)
        else:
            shutil.copyfile(PROBE, work / PROBE.name)
            r = in_arm(work, "python", f"/mnt/work/{PROBE.name}",
                       *[a.replace(str(work), "/mnt/work") for a in args], timeout=8 * 3600)
        if r.returncode == 3:
            return None
        if r.returncode != 0:
            raise SystemExit(f"probe {bundle} {backend}:{aid} on {where} failed:\n{r.stderr[-3000:]}")
        radar.log(f"probe {bundle} on {where}: {r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ''}")
    with np.load(out, allow_pickle=False) as z:
        return z["p"]


def report(work: Path, labels: np.ndarray, arm_model: str) -> str:
    from cmkd_edge.runtime.contract.manifest import read_manifest
    from cmkd_edge.runtime.metrics import paired_difference

    rows = ["| bundle | artifact | backend | INT8 format (made for) | gate arithmetic | test chips | x86 top-1 % | "
            "aarch64 top-1 % | same label | max abs prob diff | aarch64 - x86, points [95 % CI] |",
            "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name in BUNDLES:
        bundle = f"bundle-{name}"
        m = read_manifest(work / bundle)
        for backend, aid, sha in artifacts(work, bundle):
            x86, arm = probe("x86", work, bundle, backend, aid, sha), probe("arm", work, bundle, backend, aid, sha)
            if x86 is None or arm is None:
                rows.append(f"| {name} | `{aid}` | {backend} | not installed on {'x86' if x86 is None else 'aarch64'} "
                            "| | | | | | |")
                continue
            y = labels[::STRIDE[backend]]
            art = m.artifact(aid)
            fmt, how = "", ""
            rec = m.quant(art.backend, "int8") if art.precision == "int8" else None
            if rec is not None:
                types = rec.extra.get("int8_types") or {}
                made = rec.target.profile if rec.target else "host (before --for)"
                fmt = f"{types.get('name', 'NNCF')} ({made})"
                how = rec.extra.get("gate_arithmetic", "native")
            a, b = x86.argmax(1), arm.argmax(1)
            d = paired_difference(a == y, b == y)
            rows.append(f"| {name} | `{aid}` | {backend} | {fmt or '-'} | {how or '-'} | {len(y):,} | "
                        f"{(a == y).mean() * 100:.2f} | {(b == y).mean() * 100:.2f} | "
                        f"{(a == b).mean() * 100:.2f} % ({int((a != b).sum())} differ) | "
                        f"{np.abs(x86 - arm).max():.2g} | {d['difference'] * 100:+.2f} "
                        f"[{d['lo'] * 100:+.2f}, {d['hi'] * 100:+.2f}] |")
    return "\n".join([
        "## aarch64: the radar bundle on an ARM userland (benchmarks/aarch64.py)", "",
        machine_line(), "",
        f"aarch64 side: Debian bookworm arm64 under qemu-user, PyPI's aarch64 wheels, CPU model read as "
        f"`{arm_model}` (a Cortex-A76 /proc/cpuinfo: dot product, like a Raspberry Pi 5). MSTAR SOC "
        f"test split, n = {len(labels):,} (OpenVINO: every {STRIDE['openvino']}th chip, about 6 s a chip "
        "emulated), the same chip files on both sides, read by the runtime's chip reader; one bundle per "
        "target device, each exported from the same checkpoint; a byte-identical artifact is run once. "
        "No timing: emulated time means nothing.", "", *rows, "", *regate_lines(work)])


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
    r = in_arm(work, "python", "-c", "import cmkd_edge.runtime.backends.device as d; print(d.cpu_info()['model'])")
    write_section("aarch64", report(work, labels, r.stdout.strip() or "?"))


if __name__ == "__main__":
    main()
