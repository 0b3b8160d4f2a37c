"""MFH: Algorithm 1's saliency, the modality-general teacher, the synthetic experiments."""

from __future__ import annotations

import numpy as np
import torch

from cmkd_edge.distill.losses.saliency import ModalityGeneralTeacher, permutation_saliency
from cmkd_edge.mfh import experiments as syn


def test_generic_saliency_ranks_shared_unit_above_unseen_unit() -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(200, 3, generator=g)  # unit 0 shared, unit 1 teacher-only, unit 2 unused
    w = torch.tensor([[1.0, -1.0], [1.0, -1.0], [0.0, 0.0]])
    head = lambda e: e @ w  # noqa: E731
    student = feats[:, :1] @ w[:1]  # the student only sees unit 0
    sal = permutation_saliency(head, feats, student, repeats=20, generator=g)
    assert sal[0] == 1.0 and sal[0] > sal[1]


def test_linear_alg1_ranks_shared_columns_above_teacher_only_columns() -> None:
    d = syn.make_data("table2", 42, (10, 10))
    xa = torch.tensor(d["xa"], dtype=torch.float32)[None]
    xb = torch.tensor(d["xb"], dtype=torch.float32)[None]
    y = torch.tensor(d["y"])[None]
    g = torch.Generator().manual_seed(0)
    t, s = syn.train_joint(xa, xb, y, g, steps=300)
    sal = syn.linear_permutation_saliency(t, s, xa, xb, repeats=10, gen=g)[0]
    shared, teacher_only = sal[:10], sal[10:20]
    assert shared.mean() > teacher_only.mean() + 0.2
    assert set(torch.argsort(-sal)[:10].tolist()) >= set(range(8)) or shared.min() > teacher_only.median()


def test_data_follow_the_reference_draw_order() -> None:
    d = syn.make_data("gamma", 3, 4)
    np.random.seed(3)
    a = np.random.randn(500)
    xs = np.random.randn(200, 20)
    xb = np.random.randn(200, 50)
    assert np.array_equal(d["xb"][:, 10:], xb[:, 10:]) and np.array_equal(d["xb"][:, :10], xs[:, :10])
    assert np.array_equal(d["y"], (xs @ a[:20] > 0).astype(np.int64))
    assert np.array_equal(d["xa"][:, 6:16], xs[:, 6:16])
    np.random.seed(4)
    assert np.array_equal(d["xa_test"][:, 6:16], np.random.randn(1000, 20)[:, 6:16])
    t2 = syn.make_data("table2", 42, (10, 20))
    np.random.seed(42)
    xs = np.random.randn(200, 30)
    xa = np.random.randn(200, 50)
    assert np.array_equal(t2["xa"][:, 30:], xa[:, 30:]) and np.array_equal(t2["xb"][:, :20], xs[:, :20])


def test_synthetic_experiments_reproduce_the_qualitative_outcomes() -> None:
    torch.set_num_threads(1)
    gamma = syn.run_experiment("gamma", seeds=4)
    deltas = [p["delta"]["mean"] for p in gamma["points"]]
    assert deltas[0] < 0 < deltas[-1]
    assert deltas[-1] > deltas[0] + 2
    alpha = syn.run_experiment("alpha", seeds=4)
    teach = [p["teacher"]["mean"] for p in alpha["points"]]
    gains = [p["delta"]["mean"] for p in alpha["points"]]
    assert teach[-1] - teach[0] > 25
    assert gains[-1] < gains[0]
    t2 = syn.run_experiment("table2", seeds=3, teacher_mode="alg1")
    for p in t2["points"]:
        assert p["mg_teacher"]["mean"] < p["teacher"]["mean"] - 5
        assert p["mg_kd"]["mean"] > p["kd"]["mean"]
        assert set(p) >= {"k1", "k2", "gamma", "teacher", "no_kd", "kd", "mg_teacher", "mg_kd"}


def test_modality_general_teacher_freezes_units_to_batch_mean(models) -> None:
    teacher, _ = models
    frozen = torch.zeros(teacher.feature_dims["embed"], dtype=torch.bool)
    frozen[:10] = True
    mg = ModalityGeneralTeacher(teacher, frozen, torch.zeros(len(frozen))).eval()
    x = torch.randn(5, 4, 16, 16)
    _, feats = mg.forward_all(x)
    e = feats["embed"]
    assert torch.allclose(e[:, :10], e[:, :10].mean(0, keepdim=True).expand(5, 10))
    assert torch.allclose(e[:, 10:], teacher.forward_features(x)["embed"][:, 10:])
    mg.freeze_to = "dataset"
    assert torch.all(mg.forward_all(x)[1]["embed"][:, :10] == 0)
