"""The trainer: files of a run, resume determinism, teacher checks, any method through the hooks."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint
from cmkd_edge.distill.losses import METHODS
from cmkd_edge.distill.losses.base import DistillMethod, LossOutput
from cmkd_edge.distill.trainer import train
from cmkd_edge.errors import CheckpointError, ConfigError

from .conftest import tiny_config


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_teacher_run_writes_everything(teacher_run: Path) -> None:
    for name in ("last.pt", "best.pt", "metrics.csv", "summary.json", "split.csv"):
        assert (teacher_run / name).is_file(), name
    rows = _rows(teacher_run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "train_ce", "val_accuracy", "val_macro_f1", "val_ece", "lr", "time_s"} <= set(rows[0])
    summary = json.loads((teacher_run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["synthetic"] is True
    assert summary["test"]["n"] > 0 and "confusion_matrix" in summary["test"]
    best = load_checkpoint(teacher_run / "best.pt").payload()  # the dict on disk
    assert best["role"] == "teacher" and best["view"] == "ms" and best["teacher"] is None
    assert "train_state" not in best and "test" in best["metrics"]
    pre = best["preprocess"]
    assert pre["source"] == "s2" and len(pre["mean"]) == len(pre["std"]) == 13
    assert best["view_info"]["band_names"] == pre["source_bands"]
    assert best["input_hw"] == [16, 16]  # the tiny set's patch size: what export makes the input
    # the normalisation the model applies is the recorded training-split statistics
    net = model_from_checkpoint(load_checkpoint(teacher_run / "best.pt"))
    assert torch.allclose(net.norm.mean.flatten(), torch.tensor(pre["mean"], dtype=torch.float32))
    last = load_checkpoint(teacher_run / "last.pt").payload()
    assert {"optimizer", "scheduler", "method", "rng", "best_score", "history"} <= set(last["train_state"])


def test_existing_run_needs_resume(teacher_run: Path) -> None:
    with pytest.raises(ConfigError, match="already holds a run") as exc:
        train(tiny_config(teacher_run))
    assert "--resume" in exc.value.one_line()


def test_resume_reproduces_uninterrupted_run(tmp_path: Path) -> None:
    """Interrupted after epoch 1, resumed to 3 == uninterrupted 3 epochs (same seed)."""
    kw = dict(epochs=3, view="sar", arch="mobilenetv2-tiny", seed=3)
    full = train(tiny_config(tmp_path / "full", **kw))
    part = train(tiny_config(tmp_path / "part", stop_after_epoch=1, **kw))
    assert part["status"] == "interrupted" and part["test"] is None
    resumed = train(tiny_config(tmp_path / "part", resume=True, **kw))
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in _rows(tmp_path / "full")]
    again = [{k: v for k, v in r.items() if k != "time_s"} for r in _rows(tmp_path / "part")]
    assert strip == again
    assert resumed["test"]["accuracy"] == full["test"]["accuracy"]
    assert resumed["test"]["confusion_matrix"] == full["test"]["confusion_matrix"]
    a = load_checkpoint(tmp_path / "full" / "last.pt").state_dict
    b = load_checkpoint(tmp_path / "part" / "last.pt").state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_different_run(teacher_run: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(tiny_config(tmp_path / "new", resume=True))
    with pytest.raises(ConfigError, match="arch differs"):
        train(tiny_config(teacher_run, resume=True, arch="mobilenetv2-tiny"))


def test_distill_records_teacher_and_reuses_its_split(teacher_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "kd"
    s = train(tiny_config(out, view="sar", arch="mobilenetv2-tiny", teacher=str(teacher_run / "best.pt"),
                          method="kd", temperature=2.0, kd_weight=0.5))
    assert s["role"] == "student" and s["teacher_view"] == "ms"
    best = load_checkpoint(out / "best.pt").payload()
    assert best["teacher"]["sha256"] and best["teacher"]["view"] == "ms"
    assert best["method_options"]["temperature"] == 2.0 and best["method_options"]["kd_weight"] == 0.5
    assert best["preprocess"]["source"] == "s1"
    assert (out / "split.csv").read_text() == (teacher_run / "split.csv").read_text()
    assert "train_kd" in _rows(out)[0]


def test_teacher_class_mismatch(teacher_run: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="teacher classes"):
        train(tiny_config(tmp_path / "x", data="synthetic:per_class=6,size=16,num_classes=4", view="sar",
                          teacher=str(teacher_run), method="kd"))


def test_method_needing_a_teacher(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a teacher"):
        train(tiny_config(tmp_path / "x", method="kd"))


def test_bad_config_values(tmp_path: Path) -> None:
    for kw, msg in [({"epochs": 0}, "epochs"), ({"optimizer": "lion"}, "optimizer"),
                    ({"stop_after_epoch": 5}, "stop-after-epoch"), ({"lr": -1.0}, "learning rate")]:
        with pytest.raises(ConfigError, match=msg):
            tiny_config(tmp_path, **kw)


# -- a method the trainer has never heard of ------------------------------------------------------
CALLS: list[str] = []


@dataclass(frozen=True)
class _ProbeConfig:
    ce_weight: float = 1.0
    kd_weight: float = 1.0


class Probe(DistillMethod):
    """Records the hooks; a learnable scale on the KD term (must reach the optimizer and checkpoint)."""

    name = "probe"
    Config = _ProbeConfig

    def setup(self, ctx) -> None:
        CALLS.append("setup")
        self.scale = nn.Parameter(torch.ones(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def on_epoch_start(self, epoch, ctx) -> None:
        CALLS.append(f"epoch{epoch}")

    def teacher_input(self, batch, ctx):
        CALLS.append("teacher_input")
        assert batch.index.shape[0] == batch.targets.shape[0]
        return batch.views[ctx.teacher_view]

    def forward(self, s, t, targets) -> LossOutput:
        self.seen += targets.shape[0]
        ce = self.task_loss(s.logits, targets)
        kd = (self.scale * (s.logits - t.logits)).pow(2).mean()
        return LossOutput(ce + kd, {"ce": ce.detach(), "probe": kd.detach()})


@pytest.fixture
def probe_method():
    METHODS.add("probe", Probe)
    CALLS.clear()
    yield
    METHODS._entries.pop("probe")


def test_trainer_runs_an_unknown_method(probe_method, teacher_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "probe"
    train(tiny_config(out, view="rgb", teacher=str(teacher_run), method="probe"))
    assert CALLS[0] == "setup" and "epoch0" in CALLS and "epoch1" in CALLS and "teacher_input" in CALLS
    last = load_checkpoint(out / "last.pt").payload()
    state = last["train_state"]["method"]
    assert float(state["scale"]) != 1.0  # trained: the method's parameter was in the optimizer
    assert int(state["seen"]) > 0
    assert "train_probe" in _rows(out)[0]
