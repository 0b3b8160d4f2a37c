"""Fixtures for select and report: small real bundles (ONNX Runtime + OpenVINO) and labelled arrays."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from bundle_factory import make_bundle  # noqa: E402


def labelled(bundle: Path, n: int = 60, wrong: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw inputs and labels on which the bundle's FP32 is right on ``n - wrong``."""
    from cmkd_edge.runtime import Classifier

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 3000, (n, 13, 16, 16)).astype(np.float32)
    with Classifier.open(bundle, backend="onnxruntime", artifact="onnx-fp32") as clf:
        y = clf.predict(x).argmax(1)
    y[:wrong] = (y[:wrong] + 1) % 4
    return x, y


@pytest.fixture(scope="session")
def two_bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(small: fp32 ONNX + fp32 IR + gated INT8, large: a wider deeper fp32 ONNX, val.npz). Read-only."""
    root = tmp_path_factory.mktemp("select")
    small = make_bundle(root / "bundles" / "small", int8=True, openvino=True)
    large = make_bundle(root / "bundles" / "large", openvino=False, width=32, depth=3, seed=1)
    x, y = labelled(small)
    np.savez(root / "val.npz", x=x, labels=y)
    return small, large, root / "val.npz"


TINY = "synthetic:per_class=6,size=16"


def cli_ok(*args: object) -> str:
    from click.testing import CliRunner

    from cmkd_edge.cli import main

    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, (args, res.output, res.stderr)
    return res.stdout


@pytest.fixture(scope="session")
def pipeline_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's walk-through in miniature: teacher, distilled student, export, INT8 for ONNX
    Runtime behind the gate, OpenVINO IR FP32 + INT8. Read-only: copy before changing."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pipeline")
    cli_ok("train-teacher", "--data", TINY, "--view", "ms", "--arch", "resnet-narrow", "--arch-opt", "width=4",
           "--epochs", "1", "--batch-size", "8", "--quiet", "--out", root / "teacher")
    cli_ok("distill", "--teacher", root / "teacher" / "best.pt", "--data", TINY, "--student-view", "rgb",
           "--arch", "resnet-narrow", "--arch-opt", "width=4", "--method", "kd", "--epochs", "1",
           "--batch-size", "8", "--quiet", "--out", root / "student")
    bundle = root / "bundles" / "student"
    cli_ok("export", root / "student" / "best.pt", "--out", bundle, "--samples", "8")
    cli_ok("quantize", bundle, "--backend", "onnxruntime", "--precision", "int8", "--calib-size", "16",
           "--max-drop", "100")
    cli_ok("compile", bundle, "--target", "openvino", "--precision", "fp32", "--precision", "int8")
    return bundle
