"""The model card's MACs and parameters come from the exported graph and agree with the network."""

from __future__ import annotations

from pathlib import Path

import torch
from cmkd_edge.runtime.contract.manifest import read_manifest

from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint


def torch_macs(net: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of Conv2d and Linear layers, counted by forward hooks."""
    total = 0

    def hook(mod: torch.nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            total += out[0].numel() * k
        elif isinstance(mod, torch.nn.Linear):
            total += out[0].numel() * mod.in_features

    layers = (torch.nn.Conv2d, torch.nn.Linear)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, layers)]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return total


def test_card_counts_match_the_network(optical_bundle: Path, optical_ckpt: Path) -> None:
    card = read_manifest(optical_bundle).provenance.card
    ckpt = load_checkpoint(optical_ckpt)
    net = model_from_checkpoint(ckpt)
    assert card is not None and card.model == ckpt.meta.model and card.teacher == ckpt.meta.teacher
    assert card.macs == torch_macs(net, torch.zeros(1, 3, 32, 32))  # the bundle takes 32x32 patches
    weights = sum(p.numel() for n, p in net.named_parameters() if "bn" not in n and ".1." not in n)
    # the graph holds the weights with BatchNorm folded into them, plus the preprocessing constants
    assert 0.9 * weights <= card.params <= 1.2 * sum(p.numel() for p in net.parameters())
    assert card.method_options == {} and card.train_command == "test" and card.export_command
