"""The rule for the deployed weights (``--weights``) and the per-data recipes (defaults)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cmkd_edge.checkpoint import load_checkpoint
from cmkd_edge.distill.config import TrainConfig
from cmkd_edge.distill.recipes import RADAR_VIEW
from cmkd_edge.distill.trainer import train
from cmkd_edge.distill.weights import WEIGHT_RULES
from cmkd_edge.errors import UnknownNameError
from tests.data.test_data_chips import make_chips
from tests.distill.conftest import tiny_config


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_ema_deploys_the_average_and_keeps_the_validation_pick_beside_it(tmp_path: Path) -> None:
    s = train(tiny_config(tmp_path / "ema", epochs=20, weights="ema"))  # 80 steps: a 4-step constant
    best, last = load_checkpoint(tmp_path / "ema" / "best.pt"), load_checkpoint(tmp_path / "ema" / "last.pt")
    assert s["weights"]["rule"] == "ema" and 0 < s["weights"]["ema_decay"] < 1
    assert s["best_epoch"] == 20 and best.meta.epoch == 20  # the rule's weights after the last epoch
    assert not _same(best.state_dict, last.state_dict)  # an average, not the last iterate
    assert best.meta.metrics["weights"]["rule"] == "ema"
    assert (tmp_path / "ema" / "val-best.pt").exists()  # what validation would have picked
    assert "val_ema_accuracy" in s["last"]


def test_last_deploys_the_last_epoch_and_swa_averages_the_tail(tmp_path: Path) -> None:
    train(tiny_config(tmp_path / "last", epochs=3, weights="last"))
    best = load_checkpoint(tmp_path / "last" / "best.pt")
    last = load_checkpoint(tmp_path / "last" / "last.pt")
    assert _same(best.state_dict, last.state_dict)
    s = train(tiny_config(tmp_path / "swa", epochs=8, weights="swa"))  # the last 2 epochs averaged
    assert s["weights"]["rule"] == "swa"
    swa = load_checkpoint(tmp_path / "swa" / "best.pt").state_dict
    assert not _same(swa, load_checkpoint(tmp_path / "swa" / "last.pt").state_dict)
    assert WEIGHT_RULES.get("swa").averages_epoch(6, 8) and not WEIGHT_RULES.get("swa").averages_epoch(5, 8)


def test_ema_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    full = train(tiny_config(tmp_path / "full", epochs=20, weights="ema", seed=2))
    train(tiny_config(tmp_path / "part", epochs=20, weights="ema", seed=2, stop_after_epoch=12))
    again = train(tiny_config(tmp_path / "part", epochs=20, weights="ema", seed=2, resume=True))
    assert again["test"]["accuracy"] == full["test"]["accuracy"]
    assert _same(load_checkpoint(tmp_path / "full" / "best.pt").state_dict,
                 load_checkpoint(tmp_path / "part" / "best.pt").state_dict)


def test_unknown_rule_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="unknown weights rule .median."):
        train(tiny_config(tmp_path / "x", weights="median"))


def test_chip_data_gets_the_radar_recipe_and_given_options_win(tmp_path: Path) -> None:
    chips = make_chips(tmp_path / "chips", size=96)
    cfg = TrainConfig(out=tmp_path / "r", data=str(chips))
    assert (cfg.recipe, cfg.view, cfg.arch, cfg.lr, cfg.warmup_epochs, cfg.epochs, cfg.weights) == (
        "chips", RADAR_VIEW, "aconv", 3e-3, 1, 80, "ema")
    assert (cfg.batch_size, cfg.arch_options) == (8, {"dropout": 0.0})
    student = TrainConfig(out=tmp_path / "s", data=str(chips), teacher="t.pt", epochs=1)
    assert (student.view, student.arch, student.warmup_epochs) == (RADAR_VIEW, "aconv", 0)
    assert (student.batch_size, student.arch_options) == (8, {"dropout": 0.0})
    mine = TrainConfig(out=tmp_path / "m", data=str(chips), view="chip", arch="aconv-wide", lr=1e-2,
                       weights="best-val", batch_size=32)
    assert (mine.view, mine.arch, mine.lr, mine.weights, mine.epochs) == ("chip", "aconv-wide", 1e-2,
                                                                          "best-val", 80)
    # the recipe's arch options come with an arch left to the recipe; a given option of the same key wins
    assert (mine.batch_size, mine.arch_options) == (32, {})
    drop = TrainConfig(out=tmp_path / "d", data=str(chips), arch_options={"dropout": 0.5, "width": 24})
    assert drop.arch_options == {"dropout": 0.5, "width": 24}
    named = TrainConfig(out=tmp_path / "n", data=str(chips), arch="aconv")
    assert named.arch_options == {}
    other = TrainConfig(out=tmp_path / "o", data="synthetic")
    assert (other.recipe, other.view, other.arch, other.lr, other.weights, other.epochs) == (
        "default", "ms", "resnet18-small", 1e-3, "best-val", 10)
    assert (other.batch_size, other.arch_options) == (32, {})


def test_train_teacher_without_options_trains_the_recipe(tmp_path: Path) -> None:
    from cmkd_edge.cli import main

    chips = make_chips(tmp_path / "chips", size=96)
    res = CliRunner().invoke(main, ["train-teacher", "--data", str(chips), "--epochs", "2",
                                    "--out", str(tmp_path / "run"), "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt.meta.view == RADAR_VIEW and ckpt.meta.model.arch == "aconv"
    assert ckpt.meta.config["batch_size"] == 8 and ckpt.meta.config["arch_options"] == {"dropout": 0.0}
    assert ckpt.meta.config["recipe"] == "chips" and ckpt.meta.metrics["weights"]["rule"] == "ema"


def test_input_size_replaces_the_recipe_crop(tmp_path: Path) -> None:
    chips = make_chips(tmp_path / "chips", size=32)
    cfg = TrainConfig(out=tmp_path / "r", data=str(chips), input_size=24)
    assert cfg.view == RADAR_VIEW.replace("crop=88", "crop=24")
