"""Few labels and unpaired teachers through the real CLI: every bad input is one `error:` line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .relhelp import TINY, assert_one_line_error, cli


def _chips(root: Path, unlabelled: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for k, cls in enumerate(("A", "B")):
        for i in range(6):
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8) // (k + 1)).save(root / cls / f"{i}.png")
    (root / "unlabelled").mkdir(exist_ok=True)
    for i in range(unlabelled):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(root / "unlabelled" / f"u{i}.png")
    return root


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.2"])
def test_fraction_outside_0_1(tmp_path: Path, bad: str) -> None:
    res = cli("train-teacher", "--data", TINY, "--labelled-fraction", bad, "--out", tmp_path / "r")
    assert_one_line_error(res, "labelled fraction must be in (0, 1]", bad)
    assert not (tmp_path / "r").exists()


def test_unlabelled_folder_in_a_teacher_only_run(tmp_path: Path) -> None:
    root = _chips(tmp_path / "chips")
    res = cli("train-teacher", "--data", root, "--arch", "aconv", "--arch-opt", "width=4", "--epochs", "1",
              "--out", tmp_path / "r")
    assert_one_line_error(res, "3 training samples", "have no label", "--ignore-unlabelled")


def test_a_class_without_a_labelled_training_sample(tmp_path: Path) -> None:
    root = _chips(tmp_path / "chips")
    rows = ["file,label,class_name,split"]
    for cls, k in (("A", 0), ("B", 1)):
        for i in range(6):
            split = ("train", "train", "train", "train", "val", "test")[i]
            lab, name = ("", "") if cls == "B" and split == "train" else (str(k), cls)
            rows.append(f"{cls}/{i}.png,{lab},{name},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    res = cli("train-teacher", "--data", root, "--arch", "aconv", "--arch-opt", "width=4", "--epochs", "1",
              "--ignore-unlabelled", "--out", tmp_path / "r")
    assert_one_line_error(res, "class(es) B have no labelled training sample")


def test_unpaired_options_that_cannot_work(tmp_path: Path, teacher_run: Path) -> None:
    base = ("distill", "--teacher", teacher_run, "--data", TINY, "--student-view", "sar", "--arch", "resnet-narrow",
            "--arch-opt", "width=4", "--epochs", "1", "--out", tmp_path / "r")
    assert_one_line_error(cli(*base, "--teacher-data", TINY), "pairing 'given'", "--teacher-data")
    assert_one_line_error(cli(*base, "--pairing", "nearest"), "unknown pairing 'nearest'", "sembridge")
    assert_one_line_error(cli(*base, "--pairing", "random", "--pairing-opt", "k=3"),
                          "unknown option 'k' for pairing 'random'")
    assert_one_line_error(cli("train-teacher", "--data", TINY, "--labelled-ids", tmp_path / "nope.csv",
                              "--out", tmp_path / "r2"), "cannot read labelled ids")
    assert not (tmp_path / "r").exists()


def test_diagnose_without_a_student_view_or_student(teacher_run: Path) -> None:
    assert_one_line_error(cli("diagnose", "--teacher", teacher_run, "--data", TINY),
                          "needs --student-view (predict) or --student")
    assert_one_line_error(cli("diagnose", "--teacher", teacher_run, "--data", TINY, "--student-view", "sar",
                              "--labelled-fraction", "2"), "labelled fraction must be in (0, 1]")
