"""Few labels in the trainer: hidden labels never reach the label loss, the labelled ids persist,
batches mix labelled and unlabelled samples, pairing rules feed the teacher, KD's consistent teaching."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from cmkd_edge.checkpoint import load_checkpoint
from cmkd_edge.distill.loaders import LabelledBatchSampler
from cmkd_edge.distill.losses import build_method
from cmkd_edge.distill.losses.base import labelled_rows
from cmkd_edge.distill.losses.kd import calibrated_temperature
from cmkd_edge.distill.trainer import train
from cmkd_edge.errors import ConfigError, DataError

from .conftest import tiny_config


def _ids(path: Path) -> list[str]:
    with open(path, newline="") as fh:
        return [r["sample_id"] for r in csv.DictReader(fh)]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.pt").state_dict


def test_label_loss_skips_unlabelled_rows() -> None:
    m = build_method("kd")
    logits = torch.randn(4, 3, requires_grad=True)
    targets = torch.tensor([0, -1, 2, -1])
    m.task_loss(logits, targets).backward()
    assert logits.grad is not None
    assert (logits.grad[[1, 3]] == 0).all() and (logits.grad[[0, 2]] != 0).any()
    assert float(m.task_loss(logits, torch.full((4,), -1)).detach()) == 0.0
    ml = torch.tensor([[1.0, 0.0], [-1.0, -1.0]])
    assert labelled_rows(ml).tolist() == [True, False]


def test_labelled_batch_sampler_mixes_and_depends_on_seed_and_epoch_only() -> None:
    lab, unl = np.arange(0, 10), np.arange(10, 200)
    s = LabelledBatchSampler(lab, unl, batch_size=16, seed=3, share=0.25)
    assert len(s) == 200 // 16 and s.k == 4
    batches = s.batches()
    assert all(sum(i < 10 for i in b) == 4 and len(b) == 16 for b in batches)
    again = LabelledBatchSampler(lab, unl, batch_size=16, seed=3, share=0.25)
    assert again.batches() == batches
    again.set_epoch(1)
    assert again.batches() != batches
    alone = LabelledBatchSampler(lab, [], batch_size=16, seed=3, steps=12)
    assert len(alone) == 12 and all(max(b) < 10 for b in alone)  # no unlabelled index, ever
    ranks = [list(LabelledBatchSampler(lab, unl, 16, 3, rank=r, world=2)) for r in (0, 1)]
    assert sorted(map(tuple, ranks[0] + ranks[1])) == sorted(map(tuple, batches))


def test_fraction_run_records_labels_and_resume_keeps_the_ids(teacher_run: Path, tmp_path: Path) -> None:
    kw = dict(teacher=str(teacher_run), view="sar", method="kd", labelled_fraction=0.34, label_seed=5, epochs=3)
    full = tmp_path / "full"
    train(tiny_config(full, **kw))
    ids = _ids(full / "labelled.csv")
    assert len(ids) == 6  # 6 classes x round(3 train samples x 0.34) = 1 each
    ck = load_checkpoint(full / "best.pt")
    labels = ck.meta.labels
    assert labels.source == "fraction" and labels.n_labelled == 6 and labels.used_unlabelled
    assert list(labels.per_class) == [1] * 6 and labels.fraction == 0.34 and labels.label_seed == 5
    assert ck.meta.pairing["rule"] == "given"
    part = tmp_path / "part"
    train(tiny_config(part, stop_after_epoch=1, **kw))
    first = _ids(part / "labelled.csv")
    train(tiny_config(part, resume=True, **kw))
    assert _ids(part / "labelled.csv") == first == ids
    for k, v in _weights(full).items():
        assert torch.equal(v, _weights(part)[k]), k
    other = tmp_path / "other"
    train(tiny_config(other, **{**kw, "label_seed": 6, "epochs": 1}))
    assert _ids(other / "labelled.csv") != ids


def test_hidden_labels_never_change_training(teacher_run: Path, tmp_path: Path, monkeypatch) -> None:
    """Scrambling the labels the fraction hides leaves every weight bit-identical: for `none` (which
    trains on the labelled samples only) and for `kd` (where the hidden ones learn from the teacher)."""
    from cmkd_edge.data import dataset as dataset_mod

    for method, extra in (("none", {}), ("kd", {"teacher": str(teacher_run)})):
        a = tmp_path / f"{method}-a"
        train(tiny_config(a, view="sar", method=method, labelled_fraction=0.34, **extra))
        real = dataset_mod.ViewDataset.hide_labels

        def scrambled(self, keep, _real=real):
            self.true_labels = np.where(keep, self.true_labels, (self.true_labels + 1) % len(self.class_names))
            _real(self, keep)

        monkeypatch.setattr(dataset_mod.ViewDataset, "hide_labels", scrambled)
        b = tmp_path / f"{method}-b"
        train(tiny_config(b, view="sar", method=method, labelled_ids=str(a), **extra))
        monkeypatch.undo()
        assert _ids(a / "labelled.csv") == _ids(b / "labelled.csv")
        for k, v in _weights(a).items():
            assert torch.equal(v, _weights(b)[k]), (method, k)
    assert not load_checkpoint(tmp_path / "none-a" / "best.pt").meta.labels.used_unlabelled


def test_unlabelled_folder_without_a_teacher_is_refused(tmp_path: Path) -> None:
    from tests.data.test_unlabelled import chip_folders

    root = chip_folders(tmp_path / "chips")
    cfg = tiny_config(tmp_path / "run", data=str(root), view="chip", arch="aconv",
                      arch_options={"width": 4})
    with pytest.raises(ConfigError, match="have no label .* a run without a teacher cannot learn from them"):
        train(cfg)
    s = train(tiny_config(tmp_path / "run2", data=str(root), view="chip", arch="aconv", arch_options={"width": 4},
                          ignore_unlabelled=True, epochs=1))
    assert s["labels"]["source"] == "data" and s["labels"]["n_unlabelled"] == 5 and not s["labels"]["used_unlabelled"]


def test_a_class_without_a_labelled_training_sample_is_refused(tmp_path: Path) -> None:
    from tests.data.test_unlabelled import CLASSES, chip_folders

    root = chip_folders(tmp_path / "chips", unlabelled=0)
    rows = ["file,label,class_name,split"]
    for k, cls in enumerate(CLASSES):
        for i in range(6):
            split = ("train", "train", "train", "train", "val", "test")[i]
            label, name = (str(k), cls) if not (cls == "T72" and split == "train") else ("", "")
            rows.append(f"{cls}/{i:03d}.png,{label},{name},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    from cmkd_edge.data.layouts import clear_cache

    clear_cache()
    with pytest.raises(DataError, match="class.*T72 have no labelled training sample"):
        train(tiny_config(tmp_path / "run", data=str(root), view="chip", arch="aconv",
                          arch_options={"width": 4}, ignore_unlabelled=True))


@pytest.mark.parametrize("bad", [0, 1.2, -0.5])
def test_bad_fraction_is_one_config_error(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ConfigError, match="labelled fraction must be in"):
        tiny_config(tmp_path, labelled_fraction=bad)


def test_pairing_rules_feed_the_teacher_gallery_samples(teacher_run: Path, tmp_path: Path) -> None:
    kw = dict(teacher=str(teacher_run), view="sar", method="kd", labelled_fraction=0.34, epochs=1)
    rand = train(tiny_config(tmp_path / "random", pairing="random", **kw))["pairing"]
    klass = train(tiny_config(tmp_path / "class", pairing="class", **kw))["pairing"]
    assert klass["same_class_rate"] == 1.0 and klass["same_class_rate_unlabelled"] == 1.0
    assert rand["rule"] == "random" and rand["same_class_rate"] < 0.7
    sb = train(tiny_config(tmp_path / "sb", pairing="sembridge", pairing_options={"matcher_epochs": "1"}, **kw))
    assert sb["pairing"]["rule"] == "sembridge" and 0 <= sb["pairing"]["same_class_rate"] <= 1
    ck = load_checkpoint(tmp_path / "sb" / "last.pt")
    assert len(ck.train_state["pairing"]["pair"]) == sb["labels"]["n_train"]
    with pytest.raises(ConfigError, match="pairing 'given' pairs each student sample"):
        tiny_config(tmp_path / "x", teacher=str(teacher_run), teacher_data="synthetic")
    with pytest.raises(ConfigError, match="unknown option 'nope' for pairing 'random'"):
        train(tiny_config(tmp_path / "y", pairing="random", pairing_options={"nope": "1"}, **kw))


def test_class_pairing_refuses_data_without_the_classes(tmp_path: Path) -> None:
    from tests.data.test_unlabelled import chip_folders

    root = chip_folders(tmp_path / "chips")
    t = tmp_path / "t"
    train(tiny_config(t, data=str(root), view="chip", arch="aconv", arch_options={"width": 4},
                      ignore_unlabelled=True, epochs=1))
    with pytest.raises(DataError, match="class pairing needs the class of every student sample"):
        train(tiny_config(tmp_path / "s", data=str(root), view="chip", arch="aconv", arch_options={"width": 4},
                          teacher=str(t), method="kd", pairing="class", epochs=1))


def test_unpaired_teacher_data_with_a_split_file(teacher_run: Path, tmp_path: Path) -> None:
    """The MSTAR benchmark's construction on the tiny set: teacher gallery and students from disjoint
    halves of the training split (rows marked 'unused' on the other side)."""
    from cmkd_edge.data import open_dataset
    from cmkd_edge.data.splits import write_split_file

    ds = open_dataset("synthetic:per_class=6,size=16", views=["ms"], split="train",
                      split_file=teacher_run / "split.csv")
    table = dict(ds.split_table)
    train_ids = [i for i, s in table.items() if s == "train"]
    t_half, s_half = set(train_ids[::2]), set(train_ids[1::2])
    write_split_file(tmp_path / "t.csv", [(i, "unused" if i in s_half else s) for i, s in table.items()])
    write_split_file(tmp_path / "s.csv", [(i, "unused" if i in t_half else s) for i, s in table.items()])
    s = train(tiny_config(tmp_path / "run", teacher=str(teacher_run), view="sar", method="kd", pairing="class",
                          teacher_data="synthetic:per_class=6,size=16", teacher_split_file=str(tmp_path / "t.csv"),
                          split_file=str(tmp_path / "s.csv"), labelled_fraction=0.5, epochs=1))
    assert s["pairing"]["n_gallery"] == len(t_half) and s["labels"]["n_train"] == len(s_half)
    assert s["pairing"]["same_class_rate"] == 1.0


def test_kd_mixup_mixes_both_inputs_alike_and_mixes_the_label_loss() -> None:
    m = build_method("kd", {"mixup": "1.0"})
    m.train()
    np.random.seed(0)
    torch.manual_seed(0)
    x = torch.randn(8, 2, 4, 4)
    xs, xt = m.prepare_inputs(x, x.clone(), torch.arange(8))
    assert torch.allclose(xs, xt) and not torch.allclose(xs, x)
    lam, perm = m._mix
    logits = torch.randn(8, 3)
    y = torch.tensor([0, 1, 2, -1, 0, 1, 2, -1])
    want = lam * torch.nn.functional.cross_entropy(logits[y >= 0], y[y >= 0]) + (1 - lam) * \
        torch.nn.functional.cross_entropy(logits[y[perm] >= 0], y[perm][y[perm] >= 0])
    assert torch.allclose(m.task_loss(logits, y), want)
    m.eval()
    xs, _ = m.prepare_inputs(x, x, torch.arange(8))
    assert torch.equal(xs, x)  # no mixing outside training


def test_auto_temperature_is_the_teachers_calibration_temperature(teacher_run: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    calibrated = 2.0 * torch.randn(2000, 5)  # labels drawn from softmax(logits): calibrated at T = 1
    y = torch.multinomial(torch.softmax(calibrated, 1), 1).squeeze(1)
    assert 4.5 < calibrated_temperature(calibrated * 6.0, y) < 8.0  # an overconfident teacher is softened
    assert calibrated_temperature(calibrated, y) < 1.3
    s = train(tiny_config(tmp_path / "run", teacher=str(teacher_run), view="sar", method="kd",
                          method_options={"auto_temperature": "true"}, epochs=1))
    opts = load_checkpoint(Path(s["best_checkpoint"])).meta.method_options
    assert opts["auto_temperature"] and 1.0 <= opts["temperature"] <= 20.0


def test_shared_augmentation_draw_between_teacher_and_student_views() -> None:
    """Consistent teaching: the chip and its edge-radar version get one crop window and one gain
    (with factor 1 and no speckle the edge view IS the chip, so the two arrays must be equal)."""
    from cmkd_edge.data.augment import augmented_views
    from cmkd_edge.data.views import Sample, parse_view

    chip = np.random.default_rng(0).integers(1, 255, (1, 1, 40, 40)).astype(np.float32)[0]
    sample = Sample({"chip": chip}, {"chip": ("MAG",)})
    views = {v.name: v.bind({"chip": ("MAG",)}) for v in (parse_view("chip:crop=24,scale=db,aug=crop+gain"),
             parse_view("edge-radar:crop=24,scale=db,aug=crop+gain,factor=1,looks=inf"))}
    for seed in range(5):
        out = augmented_views(views, sample, np.random.default_rng(seed))
        a, b = out.values()
        assert np.array_equal(a, b)
    centre = views["chip:crop=24,scale=db,aug=crop+gain"](sample)
    assert any(not np.array_equal(augmented_views(views, sample, np.random.default_rng(s))
                                  ["chip:crop=24,scale=db,aug=crop+gain"], centre) for s in range(5))


def test_diagnose_predicts_before_any_student(teacher_run: Path, tmp_path: Path) -> None:
    """`diagnose --student-view` needs no student; its verdict follows the labels and the pairing."""
    import json

    from click.testing import CliRunner

    from cmkd_edge.cli import main
    from cmkd_edge.distill.prediction import predict_gain

    out = tmp_path / "d.json"
    r = CliRunner().invoke(main, ["diagnose", "--teacher", str(teacher_run), "--data", "synthetic:per_class=6,size=16",
                                  "--student-view", "sar", "--labelled-fraction", "0.34", "--json", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["prediction"] in ("help", "no-help", "unsure") and res["prediction"] in r.output
    assert res["labels"]["n_labelled"] == 6 and res["labels"]["n_unlabelled"] == 18
    # the labels diagnose predicts for are the ones distill --labelled-fraction draws
    run = tmp_path / "run"
    train(tiny_config(run, teacher=str(teacher_run), view="sar", method="kd", labelled_fraction=0.34, epochs=1))
    assert list(load_checkpoint(run / "best.pt").meta.labels.per_class) == res["labels"]["per_class"]
    full = predict_gain(str(teacher_run), "synthetic:per_class=6,size=16", "sar")
    assert full["labels"]["n_unlabelled"] == 0
    assert full["prediction"] == ("help" if full["probe"]["teacher_only"] > full["probe"]["alone"]
                                  and "beats one trained on the labels" in full["reasons"][0] else "no-help")
    rand = predict_gain(str(teacher_run), "synthetic:per_class=6,size=16", "sar", labelled_fraction=0.34,
                        pairing="random")
    klass = predict_gain(str(teacher_run), "synthetic:per_class=6,size=16", "sar", labelled_fraction=0.34,
                         pairing="class")
    assert rand["teacher"]["signal_accuracy_on_train"] < klass["teacher"]["signal_accuracy_on_train"]
    assert rand["probe"]["taught"] <= klass["probe"]["taught"]
    r = CliRunner().invoke(main, ["diagnose", "--teacher", str(teacher_run)])
    assert r.exit_code == 2 and "needs --student-view" in r.output
