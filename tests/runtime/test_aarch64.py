"""The torch-free runtime on aarch64, under qemu-user: same labels as on this x86 host.

The arm64 userland (Debian bookworm, Python 3.11, PyPI's aarch64 wheels of the base install) is
built by ``.ci/aarch64-userland.sh``; this test installs the checkout's wheel into it, then classifies
the test chips of a small chip bundle (FP32, and INT8 quantized ``--for aarch64-dotprod``) and a
small GeoTIFF scene with the FP32 and an INT8 artifact, inside the userland and here, and compares.
Emulated time means nothing: parity only. ONNX Runtime's cpuinfo library needs an ARM
/proc/cpuinfo under qemu, so a Cortex-A76's is bind-mounted over it (in a private mount namespace).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _aarch64 import in_arm, install_checkout, unavailable  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")


def _in_arm(work: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return in_arm(work, *cmd, timeout=1200)


def _here(*cmd: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CMKD_EDGE_SPEED_PROBE": "0"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inputs and bundles both sides read, and the checkout's wheel installed in the userland."""
    sys.path.insert(0, str(REPO / "tests" / "data"))
    from bundle_factory import make_bundle, write_scene
    from test_data_chips import make_chips

    w = tmp_path_factory.mktemp("aarch64")
    chips = make_chips(w / "chips", per_class=8)
    run = w / "run"
    import torch
    from cmkd_edge.export.student import export_checkpoint

    from cmkd_edge.distill.config import TrainConfig
    from cmkd_edge.distill.trainer import train

    torch.set_num_threads(1)
    train(TrainConfig(out=run, data=str(chips), view="chip:crop=24,scale=db,norm=mean", input_size=24,
                      arch="aconv", arch_options={"width": 4}, epochs=3, batch_size=4, device="cpu", quiet=True))
    bundle = export_checkpoint(run / "best.pt", w / "chip-bundle", samples=4, batch=2)
    from cmkd_edge.export.quantize import quantize_bundle

    rec = quantize_bundle(bundle, backend="onnxruntime", calib_data=str(chips), max_drop=100.0,
                          qat_epochs=0, target="aarch64-dotprod")
    assert rec.accepted_precision == "int8" and rec.extra["int8_types"]["name"] == "S8S8"
    make_bundle(w / "scene-bundle", openvino=False, int8=True)
    write_scene(w / "scene.tif", 40, 56)
    install_checkout(REPO, w)
    return w


def _classify(where: str, work: Path, bundle: str, inputs: list[str], precision: str,
              extra: tuple[str, ...] = ()) -> dict:
    args = ["classify", bundle, *inputs, "--backend", "onnxruntime", "--precision", precision,
            "--json", "--no-progress", "--no-speed-probe", *extra]
    if where == "arm":
        r = _in_arm(work, "/opt/venv/bin/cmkd-edge", *[a.replace(str(work), "/mnt/work") for a in args])
    else:
        r = _here(str(Path(sys.executable).with_name("cmkd-edge")), *args)
    assert r.returncode == 0, f"{where}: {r.stderr[-2000:]}"
    return json.loads(r.stdout)


def _probs(result: dict | list) -> tuple[list[tuple[str, str]], np.ndarray]:
    items = [i for i in (result["results"] if isinstance(result, dict) else result) if "class" in i]
    return ([(i["input"], i["class"]) for i in items],
            np.asarray([list(i["probabilities"].values()) for i in items]))


def test_runtime_on_aarch64_matches_x86(work: Path) -> None:
    r = _in_arm(work, "/opt/venv/bin/python", "-c",
                "import platform, onnxruntime, cmkd_edge.runtime.backends.device as d; "
                "print(platform.machine(), onnxruntime.__version__, d.cpu_info()['model'], "
                "'torch' in __import__('sys').modules)")
    assert r.returncode == 0, r.stderr
    machine, _ver, *rest = r.stdout.split()
    assert machine == "aarch64" and rest[-1] == "False"
    assert "Cortex-A76" in r.stdout  # the board's core, not "aarch64"
    chips = str(work / "chips" / "jpeg")  # every chip of the small set (train, val and test)
    for precision in ("fp32", "int8"):
        x86 = _classify("x86", work, str(work / "chip-bundle"), [chips], precision)
        arm = _classify("arm", work, str(work / "chip-bundle"), [chips], precision)
        (lx, px), (la, pa) = _probs(x86), _probs(arm)
        assert len(lx) >= 20 and lx == la, precision  # same chips, same labels
        # FP32: float kernels agree to rounding. INT8 (S8S8, quantized for this profile): the board's
        # SDOT kernel is exact, this AVX2 host's fused S8S8 path is not (device_profiles.gate_arithmetic),
        # so probabilities differ slightly (0.005 seen here) while every label holds
        assert np.abs(px - pa).max() <= (1e-4 if precision == "fp32" else 0.02), precision
    # a GeoTIFF scene, FP32 and INT8 (U8S8 from this host's rule): the class maps agree
    import rasterio

    for precision in ("fp32", "int8"):
        maps = {}
        for where in ("x86", "arm"):
            out = work / f"map-{where}-{precision}.tif"
            _classify(where, work, str(work / "scene-bundle"), [str(work / "scene.tif")], precision,
                      ("--out", str(out)))
            with rasterio.open(out) as src:
                maps[where] = src.read(1)
        assert (maps["x86"] == maps["arm"]).mean() >= 0.999, precision
