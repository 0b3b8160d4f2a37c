"""Tiny real student checkpoints and raw batches for the export tests (imported by name, not through
conftest: several test folders have a conftest.py, and ``from conftest import`` picks whichever comes
first on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cmkd_edge.checkpoint import Checkpoint, save_checkpoint
from cmkd_edge.data.synthetic import CLASS_NAMES
from cmkd_edge.models import build_model

EUROSAT = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
# the synthetic default's classes: calibration and the gate refuse data with another class list
CLASSES = list(CLASS_NAMES)


def make_checkpoint(path: Path, *, sar: bool = False, arch: str = "resnet-narrow",
                    seed: int = 0) -> Path:
    """An RGB-from-13-bands optical student, or a linear-power SAR student (to_db + clip)."""
    torch.manual_seed(seed)
    if sar:
        spec = {"source": "s1", "source_bands": ["VV", "VH"], "source_units": "linear",
                "select": [0, 1], "to_db": True, "clip": [-50.0, 30.0],
                "mean": [-12.0, -19.0], "std": [4.0, 5.0]}
        view, info = "sar", {"modality": "sar", "band_names": ["VV", "VH"], "units": "db",
                             "synthetic": False}
    else:
        spec = {"source": "s2", "source_bands": list(EUROSAT), "source_units": "reflectance_x1e4",
                "select": [3, 2, 1], "to_db": False, "clip": [0.0, 20000.0],
                "mean": [1000.0, 1100.0, 1300.0], "std": [600.0, 500.0, 450.0]}
        view, info = "rgb", {"modality": "optical", "band_names": ["B04", "B03", "B02"],
                             "units": "reflectance_x1e4", "synthetic": False}
    net = build_model(arch, len(spec["select"]), len(CLASSES), mean=spec["mean"], std=spec["std"],
                      clip=spec["clip"] if sar else None)
    # non-trivial BatchNorm statistics so logits differ between samples
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    save_checkpoint(path, Checkpoint.of(
        net.state_dict(), model=net.config, role="student", task="multiclass", class_names=CLASSES,
        view=view, view_info=info, preprocess=spec, method="kd", method_options={}, teacher=None,
        seed=seed, command="test", epoch=1, metrics={"val_top1": 0.5}, data={"path": None}))
    return path


def raw_batch(n: int, sar: bool = False, hw: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if sar:
        db = rng.uniform(-30, 5, size=(n, 2, hw, hw))
        return np.power(10.0, db / 10.0).astype(np.float32)
    return rng.uniform(0, 5000, size=(n, 13, hw, hw)).astype(np.float32)
