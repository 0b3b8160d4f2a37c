"""Every method of this issue: options parse, setup runs, the loss is finite and backpropagates."""

from __future__ import annotations

import pytest
import torch

from cmkd_edge.distill.losses import METHODS, build_method
from cmkd_edge.distill.losses.base import Batch, ModelOutput
from cmkd_edge.errors import ConfigError

CASES = [
    ("ds", {}),
    ("ds", {"ind_variant": "independent", "uni_variant": "spatial", "kd_weight": "0"}),
    ("ds", {"uni_variant": "flatten", "ind_weight": "2", "uni_t": "1.5"}),
    ("sembridge", {"pairing": "matched", "matcher_epochs": "1", "rematch_e0": "0", "rematch_de": "1"}),
    ("sembridge", {"pairing": "random-same-class", "align": "sinkhorn", "sinkhorn_iters": "5"}),
    ("sembridge", {"pairing": "given", "coral_convention": "deep-coral", "teacher_attention": "false"}),
    ("mfh", {"repeats": "2", "saliency_epochs": "1", "head_epochs": "1", "ratio": "0.25"}),
    ("mfh", {"repeats": "2", "saliency_epochs": "0", "head_epochs": "0", "freeze_to": "dataset"}),
]


def _batch(ds, idx):
    v, y = zip(*[ds[i] for i in idx], strict=False)
    return Batch({k: torch.stack([x[k] for x in v]) for k in v[0]}, torch.stack(y), torch.tensor(idx))


@pytest.mark.parametrize(("name", "opts"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_loss_is_finite_and_backpropagates(name, opts, ctx, paired) -> None:
    method = build_method(name, opts)
    method.setup(ctx)
    method.on_epoch_start(0, ctx)
    batch = _batch(paired, list(range(8)))
    t_in = method.teacher_input(batch, ctx)
    assert t_in.shape == batch.views["ms"].shape
    with torch.no_grad():
        t_out = ModelOutput(*ctx.teacher.forward_all(t_in))
    s_out = ModelOutput(*ctx.student.forward_all(batch.views["rgb"]))
    out = method(s_out, t_out, batch.targets)
    assert torch.isfinite(out.total) and all(torch.isfinite(v) for v in out.parts.values())
    out.total.backward()
    grads = [p.grad for p in ctx.student.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if name == "sembridge" and opts.get("align") != "none":
        assert any(p.grad is not None for p in method.parameters())  # attention/heads learn
    ctx.student.zero_grad()


def test_sembridge_pairs_are_same_class_and_rematch_runs(ctx, paired) -> None:
    logs: list[str] = []
    ctx.log = logs.append
    m = build_method("sembridge", {"pairing": "matched", "matcher_epochs": "1", "rematch_e0": "1", "rematch_de": "2"})
    m.setup(ctx)
    assert (paired.labels[m.pair] == paired.labels).all()
    m.on_epoch_start(1, ctx)
    assert any("re-matched at epoch 1" in line and "distinct teacher samples" in line for line in logs)
    assert m.last_rematch is not None and 1 <= m.last_rematch["distinct"] <= len(paired)
    assert (paired.labels[m.pair] == paired.labels).all()
    batch = _batch(paired, [0, 1, 2])
    assert torch.equal(m.teacher_input(batch, ctx), paired.ms[m.pair[:3]])
    assert paired.augment is True  # restored after gathering the gallery


def test_sembridge_forward_before_setup_is_a_bug_not_a_lazy_build(ctx, paired) -> None:
    """Heads built lazily in forward would be missing from the optimizer and never train."""
    m = build_method("sembridge", {"pairing": "given"})
    batch = _batch(paired, [0, 1])
    with torch.no_grad():
        t_out = ModelOutput(*ctx.teacher.forward_all(batch.views["ms"]))
    s_out = ModelOutput(*ctx.student.forward_all(batch.views["rgb"]))
    with pytest.raises(RuntimeError, match="before setup"):
        m(s_out, t_out, batch.targets)
    assert not list(m.parameters())
    m.setup(ctx)
    assert list(m.parameters())  # setup built the heads, so an optimizer made now includes them
    assert torch.isfinite(m(s_out, t_out, batch.targets).total)


def test_mfh_replaces_the_teacher_and_writes_ranking(ctx) -> None:
    from cmkd_edge.distill.losses.saliency import ModalityGeneralTeacher

    m = build_method("mfh", {"repeats": "2", "saliency_epochs": "1", "ratio": "0.5"})
    m.setup(ctx)
    assert isinstance(ctx.teacher, ModalityGeneralTeacher)
    assert int(ctx.teacher.frozen.sum()) == ctx.teacher.feature_dims["embed"] // 2
    assert (ctx.run_dir / "mfh_saliency.json").is_file()
    assert m.saliency.numel() == ctx.teacher.feature_dims["embed"]


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("ds", {"ind_variant": "nope"}),
        ("ds", {"uni_weight": "x"}),
        ("ds", {"unknown": "1"}),
        ("sembridge", {"pairing": "paired"}),
        ("sembridge", {"align": "emd"}),
        ("sembridge", {"rematch_de": "0"}),
        ("mfh", {"ratio": "1.5"}),
        ("mfh", {"layer": "map"}),
        ("mfh", {"freeze_to": "zero"}),
    ],
)
def test_bad_options_raise_config_error(name, bad) -> None:
    with pytest.raises(ConfigError):
        build_method(name, bad)


def test_defaults_are_the_papers() -> None:
    sb = build_method("sembridge").cfg
    assert (sb.ce_weight, sb.kd_weight, sb.temperature, sb.reduction, sb.t2, sb.align_weight) == (
        0.3,
        0.4,
        3.0,
        "batchmean",
        False,
        0.003,
    )
    assert (sb.rematch_e0, sb.rematch_de, sb.rematch_emu, sb.rematch_temperature) == (30, 30, 5, 3.0)
    assert build_method("ds").cfg.uni_t == 2.0
    for name in ("ds", "sembridge", "mfh"):
        assert name in METHODS


def test_ds_match_variant_needs_equal_widths(ctx) -> None:
    with pytest.raises(ConfigError, match="equal embed widths"):
        build_method("ds", {"ind_variant": "match"}).setup(ctx)
