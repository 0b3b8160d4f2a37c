"""Radar chips through the real CLI: bad chips and bad view options are one ``error:`` line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .relhelp import assert_one_line_error, cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from test_data_chips import make_chips  # noqa: E402


@pytest.fixture
def chips(tmp_path: Path) -> Path:
    return make_chips(tmp_path / "chips")


@pytest.mark.parametrize("case, needles", [
    ("truncated", ("00001.png is truncated or corrupt",)),
    ("colour", ("00001.png is a colour image",)),
    ("missing", ("file not found", "00001.png", "labels.csv")),
])
def test_bad_chip_in_training_data(chips: Path, tmp_path: Path, case: str, needles: tuple[str, ...]) -> None:
    bad = chips / "jpeg" / "train" / "T72" / "00001.png"
    if case == "truncated":
        noise = np.random.default_rng(0).integers(0, 256, (32, 32)).astype(np.uint8)
        Image.fromarray(noise).save(bad)
        bad.write_bytes(bad.read_bytes()[:300])
    elif case == "colour":
        Image.fromarray((np.zeros((32, 32, 3)) + [0, 50, 0]).astype(np.uint8)).save(bad)
    else:
        bad.unlink()
    res = cli("train-teacher", "--data", chips, "--epochs", "1", "--out", tmp_path / "run", "-q")
    assert_one_line_error(res, *needles)


@pytest.mark.parametrize("args, needles", [
    (("--view", "chip:scale=ln"), ("unknown scale 'ln'",)),
    (("--view", "rgb", "--input-size", "88"), ("--input-size crops chip views",)),
    (("--input-size", "64"), ("crops 64x64 from 32x32 chips",)),
])
def test_bad_chip_view_options(chips: Path, tmp_path: Path, args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    res = cli("train-teacher", "--data", chips, "--epochs", "1", "--out", tmp_path / "run", "-q", *args)
    assert_one_line_error(res, *needles)
