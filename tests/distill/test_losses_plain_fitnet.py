"""Methods ``none`` and ``fitnet``: options, documented properties, gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cmkd_edge.distill.losses import build_method
from cmkd_edge.distill.losses.base import DistillContext, ModelOutput
from cmkd_edge.distill.losses.fitnet import hint_loss
from cmkd_edge.errors import ConfigError
from cmkd_edge.models import build_model

torch.set_num_threads(1)


def _ctx(student: nn.Module, teacher: nn.Module | None) -> DistillContext:
    return DistillContext(teacher=teacher, student=student, train_set=None, device=torch.device("cpu"),
                          teacher_view="ms", student_view="rgb", run_dir=Path("."), make_loader=None)


def test_none_is_cross_entropy_and_needs_no_teacher() -> None:
    m = build_method("none")
    assert m.needs_teacher is False
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    out = m(ModelOutput(logits, {}), None, y)
    assert torch.allclose(out.total, nn.functional.cross_entropy(logits, y))
    smooth = build_method("none", {"label_smoothing": "0.1"})
    assert not torch.allclose(smooth(ModelOutput(logits, {}), None, y).total, out.total)


def test_none_rejects_kd_options() -> None:
    with pytest.raises(ConfigError, match="kd_weight"):
        build_method("none", {"kd_weight": 1.0})
    with pytest.raises(ConfigError):
        build_method("none", {"label_smoothing": "1.5"})


def test_hint_loss_pools_to_common_size() -> None:
    t = torch.randn(2, 4, 4, 4)
    s = t.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # same map at 8x8
    assert hint_loss(s, t).item() == pytest.approx(0.0, abs=1e-6)
    assert hint_loss(t, s).item() == pytest.approx(0.0, abs=1e-6)
    assert hint_loss(s + 1, t).item() == pytest.approx(1.0)


def test_fitnet_builds_regressor_and_trains_it() -> None:
    torch.manual_seed(0)
    student = build_model("mobilenetv2-tiny", 3, 5)
    teacher = build_model("resnet-narrow", 13, 5).eval()
    m = build_method("fitnet", {"hint_weight": "2", "kd_weight": "0.5", "temperature": "2"})
    m.setup(_ctx(student, teacher))
    assert m.regressor.in_channels == student.feature_dims["map"]
    assert m.regressor.out_channels == teacher.feature_dims["map"]
    xs, xt, y = torch.randn(2, 3, 32, 32), torch.randn(2, 13, 32, 32), torch.tensor([0, 3])
    with torch.no_grad():
        t_out = ModelOutput(*teacher.forward_all(xt))
    out = m(ModelOutput(*student.forward_all(xs)), t_out, y)
    assert set(out.parts) == {"ce", "kd", "hint"}
    expected = out.parts["ce"] + 0.5 * out.parts["kd"] + 2 * out.parts["hint"]
    assert torch.allclose(out.total, expected)
    out.total.backward()
    assert m.regressor.weight.grad is not None and m.regressor.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert "regressor.weight" in m.state_dict()


def test_fitnet_option_errors() -> None:
    with pytest.raises(ConfigError):
        build_method("fitnet", {"feature": "embed"})
    m = build_method("fitnet")
    with pytest.raises(ConfigError, match="teacher"):
        m.setup(_ctx(build_model("resnet-narrow", 3, 2), None))
