"""Every registered arch builds for any band count, returns the documented taps, and trains."""

from __future__ import annotations

import pytest
import torch

from cmkd_edge.errors import ConfigError, UnknownNameError
from cmkd_edge.models import ARCHS, build_model, count_parameters

torch.set_num_threads(1)


@pytest.mark.parametrize("arch", ARCHS.names())
@pytest.mark.parametrize("channels", [2, 13])
def test_forward_all_shapes_and_backward(arch: str, channels: int) -> None:
    torch.manual_seed(0)
    net = build_model(arch, channels, 5, mean=[100.0] * channels, std=[10.0] * channels)
    x = torch.randn(2, channels, 32, 32) * 10 + 100
    logits, feats = net.forward_all(x)
    assert logits.shape == (2, 5)
    assert set(feats) == {"map", "last", "embed"}
    dims = net.feature_dims
    assert feats["map"].shape[:2] == (2, dims["map"]) and feats["map"].ndim == 4
    assert feats["last"].shape[:2] == (2, dims["last"]) and feats["last"].ndim == 4
    assert feats["embed"].shape == (2, dims["embed"])
    # "last" still has spatial extent on a 32 px patch (feature losses need it)
    assert feats["last"].shape[-1] >= 1 and feats["map"].shape[-1] >= feats["last"].shape[-1]
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert torch.equal(net(x), net.forward_head(net.forward_features(x)["embed"])) or net.training
    assert count_parameters(net) > 0


@pytest.mark.parametrize("arch", ARCHS.names())
def test_config_rebuilds_same_model(arch: str) -> None:
    net = build_model(arch, 3, 4, clip=(0.0, 1e4))
    again = build_model(net.config["arch"], net.config["in_channels"], net.config["num_classes"],
                        clip=(0.0, 1e4), **net.config["kwargs"])
    again.load_state_dict(net.state_dict())
    net.eval()
    again.eval()
    x = torch.rand(1, 3, 32, 32) * 2e4  # beyond the clip on purpose
    assert torch.allclose(net(x), again(x))


def test_input_norm_is_inside_the_model() -> None:
    net = build_model("resnet-narrow", 1, 2, mean=[5.0], std=[2.0]).eval()
    assert torch.allclose(net.norm(torch.full((1, 1, 4, 4), 7.0)), torch.ones(1, 1, 4, 4))


def test_unknown_arch_and_bad_sizes() -> None:
    with pytest.raises(UnknownNameError) as exc:
        build_model("resnet1000", 3, 2)
    assert "resnet1000" in exc.value.one_line() and "resnet18" in exc.value.one_line()
    with pytest.raises(ConfigError, match="in_channels"):
        build_model("resnet-narrow", 0, 2)
    with pytest.raises(ConfigError, match="invalid options"):
        build_model("resnet-narrow", 3, 2, no_such_option=1)
