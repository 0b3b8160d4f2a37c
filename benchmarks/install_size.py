"""Installed size of each install flavour on x86-64 and aarch64, and cold start to the first prediction.

Flavours: the base install (the runtime: numpy, click, rich, onnxruntime, Pillow) and base + ``[geo]``
(rasterio with its GDAL), each installed with ``pip install --target`` from PyPI's wheels for the
architecture (``--platform``: no emulation needed to install), plus OpenVINO for reference. Cold
start: a fresh interpreter on this host, from process start to the first chip's probabilities
(``Classifier.open`` + ``predict``) on a radar-chip bundle, median of ``--repeats``; on aarch64 the
same runs under qemu-user and is reported as emulated (a board's figure needs a board).

    python benchmarks/install_size.py --bundle BUNDLE_DIR --chip CHIP [--workdir runs/bench-install]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _aarch64 import ROOT as ARM_ROOT  # noqa: E402
from _aarch64 import build_wheel, in_arm, unavailable  # noqa: E402
from _report import ROOT, machine_line, write_section  # noqa: E402

FLAVOURS = {"base": "", "base + [geo]": "[geo]", "base + [openvino]": "[openvino]"}
ARM_PLATFORMS = [f"manylinux_{v}_aarch64" for v in ("2_17", "2_27", "2_28", "2_31", "2_34", "2_35", "2_36")] \
    + ["manylinux2014_aarch64"]
COLD = ("import time, sys; t0 = float(sys.argv[1]); from cmkd_edge.runtime import Classifier; "
        "from cmkd_edge.runtime.formats.chips import read_chip; "
        "from cmkd_edge.runtime.contract.records import ONNX_FP32; "
        "c = Classifier.open(sys.argv[2], backend='onnxruntime', artifact=ONNX_FP32, probe=False); "
        "c.predict(read_chip(sys.argv[3])); print(time.time() - t0)")


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def install(target: Path, wheel: Path, extra: str, arm: bool) -> None:
    if target.exists():
        return
    args = [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), f"{wheel}{extra}"]
    if arm:
        args += ["--only-binary=:all:", "--python-version", "3.11", *[a for p in ARM_PLATFORMS
                                                                     for a in ("--platform", p)]]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise SystemExit(f"pip install --target {target} failed: {r.stderr[-2000:]}")


def biggest(target: Path, k: int = 3) -> str:
    sizes = sorted(((du(d), d.name) for d in target.iterdir() if d.is_dir() and not d.name.endswith(
        (".dist-info", "__pycache__"))), reverse=True)[:k]
    return ", ".join(f"{n} {s / 2**20:.0f}" for s, n in sizes)


def cold_start(target: Path, bundle: Path, chip: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "CMKD_EDGE_SPEED_PROBE": "0",
               "HOME": str(target.parent)}
        t0 = time.time()
        r = subprocess.run([sys.executable, "-s", "-c", COLD, repr(t0), str(bundle), str(chip)],
                           capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise SystemExit(f"cold start failed: {r.stderr[-1500:]}")
        times.append(float(r.stdout.split()[-1]))
    return statistics.median(times)


def arm_cold_start(target: Path, work: Path, bundle: Path, chip: Path, repeats: int) -> float:
    """The same cold start inside the arm64 userland (its own Python, the aarch64 install on its path),
    timed from here: emulated time, plus the namespace set-up (under 0.1 s)."""
    shutil.rmtree(ARM_ROOT / "root" / "opt" / "flavour-base", ignore_errors=True)
    shutil.copytree(target, ARM_ROOT / "root" / "opt" / "flavour-base")
    shutil.copytree(bundle, work / "bundle", dirs_exist_ok=True)
    shutil.copyfile(chip, work / f"chip{chip.suffix}")
    times = []
    for _ in range(max(1, repeats // 2)):
        t0 = time.time()
        r = in_arm(work, "/usr/bin/python3", "-s", "-c", COLD, "0", "/mnt/work/bundle", f"/mnt/work/chip{chip.suffix}",
                   env={"PYTHONPATH": "/opt/flavour-base"})
        if r.returncode != 0:
            raise SystemExit(f"aarch64 cold start failed: {r.stderr[-1500:]}")
        times.append(time.time() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, help="a radar-chip bundle directory (FP32 ONNX)")
    ap.add_argument("--chip", required=True, help="one chip file")
    ap.add_argument("--workdir", default="runs/bench-install")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    work = Path(args.workdir).resolve()
    wheel = build_wheel(ROOT, work / "wheel")
    rows = ["| flavour | arch | installed MiB | largest packages (MiB) | cold start to first prediction, s |",
            "|---|---|---:|---|---:|"]
    arm_why = unavailable()
    for name, extra in FLAVOURS.items():
        for arch in ("x86_64", "aarch64"):
            target = work / f"{arch}-{extra.strip('[]') or 'base'}"
            install(target, wheel, extra, arch == "aarch64")
            cold = "-"
            if arch == "x86_64" and extra != "[openvino]":
                cold = f"{cold_start(target, Path(args.bundle), Path(args.chip), args.repeats):.2f}"
            elif arch == "aarch64" and extra == "" and arm_why is None:
                secs = arm_cold_start(target, work, Path(args.bundle), Path(args.chip), args.repeats)
                cold = f"{secs:.1f} (emulated)"
            rows.append(f"| {name} | {arch} | {du(target) / 2**20:.0f} | {biggest(target)} | {cold} |")
    body = "\n".join([
        "## Install flavours: size and cold start (benchmarks/install_size.py)", "", machine_line(), "",
        "Each flavour installed with `pip install --target` from PyPI's wheels for the architecture "
        f"(Python 3.11; the aarch64 ones with `--platform`), `{wheel.name}`. Cold start: a fresh "
        f"interpreter to the first chip's probabilities (`Classifier.open` + `predict`, ONNX Runtime FP32, "
        f"speed probe off) on `{Path(args.bundle).name}`, median of {args.repeats}; aarch64 under qemu-user "
        "(emulated: it says how much work is done, not how long a board takes; "
        + (f"not run here: {arm_why}" if arm_why else "a Cortex-A76 /proc/cpuinfo") + ").", "", *rows, ""])
    write_section("install-size", body)
    os.sync()


if __name__ == "__main__":
    main()
