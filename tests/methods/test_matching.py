"""SemBridge's matching: schedule, static and dynamic pairing, the matcher."""

from __future__ import annotations

import pytest
import torch

from cmkd_edge.distill.losses.matching import (
    kl_matrix,
    load_matcher,
    match_by_similarity,
    random_same_class,
    rematch_by_kl,
    rematch_epochs,
    save_matcher,
    soft_contrastive_loss,
    train_matcher,
)
from cmkd_edge.errors import CheckpointError, ConfigError, DataError


def test_schedule_reproduces_the_papers_epoch_lists() -> None:
    assert rematch_epochs(30, 30, 5, 150) == [30, 60, 95, 135]
    assert rematch_epochs(45, 15, 5, 150) == [45, 60, 80, 105, 135]
    assert rematch_epochs(2, 2, 1, 10) == [2, 4, 7]
    with pytest.raises(ConfigError):
        rematch_epochs(0, 0, 5, 10)


def test_dynamic_matching_picks_same_class_item_of_least_kl() -> None:
    s_logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    s_labels = torch.tensor([0, 1])
    # gallery: item 0 (class 1) is the closest to student 0's prediction but of the wrong class
    t_logits = torch.tensor([[2.0, 0.0, 0.0], [0.5, 0.0, 0.0], [1.9, 0.1, 0.0], [0.0, 3.0, 0.0], [0.0, 0.5, 0.0]])
    t_labels = torch.tensor([1, 0, 0, 1, 1])
    idx = rematch_by_kl(s_logits, t_logits, s_labels, t_labels, temperature=3.0)
    assert idx.tolist() == [2, 3]
    kl = kl_matrix(s_logits, t_logits, 3.0)
    brute = torch.stack(
        [
            torch.stack(
                [
                    (torch.softmax(t / 3, 0) * (torch.log_softmax(t / 3, 0) - torch.log_softmax(s / 3, 0))).sum()
                    for t in t_logits
                ]
            )
            for s in s_logits
        ]
    )
    assert torch.allclose(kl, brute, atol=1e-5)


def test_static_matching_and_random_pairs_stay_in_class() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(30) % 3
    zt = torch.randn(30, 8, generator=g)
    zs = zt + 0.01 * torch.randn(30, 8, generator=g)
    assert match_by_similarity(zs, zt, labels, labels).tolist() == list(range(30))
    rnd = random_same_class(labels, labels, g)
    assert (labels[rnd] == labels).all()
    with pytest.raises(DataError):
        match_by_similarity(zs, zt[:3], labels, torch.tensor([0, 0, 1]))


def test_soft_contrastive_loss_lower_for_aligned_pairs() -> None:
    z = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    other = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    assert soft_contrastive_loss(z, z) < soft_contrastive_loss(z, other)


def test_matcher_trains_saves_and_loads(tmp_path, paired) -> None:
    torch.manual_seed(0)
    m = train_matcher(paired.ms, paired.rgb, epochs=2, batch_size=8)
    p = tmp_path / "m.pt"
    save_matcher(p, m)
    m2 = load_matcher(p, 4, 3)
    x = paired.rgb[:4]
    assert torch.allclose(m.embed_student(x), m2.embed_student(x), atol=1e-6)
    with pytest.raises(CheckpointError):
        load_matcher(p, 13, 3)
    with pytest.raises(CheckpointError):
        load_matcher(tmp_path / "missing.pt")
