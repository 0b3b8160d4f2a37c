"""Model architectures by name (``--arch``): a teacher ResNet-18 and two edge students.

Every model takes raw view values (N, C, H, W), normalises them inside the network, and exposes
``forward_all`` -> (logits, {"map", "last", "embed"}) for the distillation losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# explicit imports so registration never depends on import order
from cmkd_edge.models import aconv, mobilenet, resnet  # noqa: F401
from cmkd_edge.models.base import ARCHS, CmkdNet, InputNorm

__all__ = ["ARCHS", "CmkdNet", "InputNorm", "build_model", "count_parameters"]


def build_model(
    arch: str,
    in_channels: int,
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    clip: Sequence[float] | None = None,
    **kwargs: Any,
) -> CmkdNet:
    """Build ``arch`` for ``in_channels`` bands and ``num_classes`` outputs.

    ``net.config`` records what is needed to rebuild it from a checkpoint (normalisation buffers
    live in the state dict).
    """
    from cmkd_edge.errors import ConfigError

    factory = ARCHS.get(arch)
    if in_channels < 1 or num_classes < 1:
        raise ConfigError(f"in_channels and num_classes must be >= 1 (got {in_channels}, {num_classes})")
    try:
        net = factory(in_channels, num_classes, mean=mean, std=std, clip=clip, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"invalid options for arch {arch!r}: {exc}") from None
    net.config = {
        "arch": arch,
        "in_channels": in_channels,
        "num_classes": num_classes,
        "kwargs": {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()},
    }  # the clip is not recorded here: the preprocessing spec is its one home
    return net


def count_parameters(net: CmkdNet) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
