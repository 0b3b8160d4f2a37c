"""A-ConvNets-style all-convolutional student for radar chips (Chen et al., IEEE TGRS 2016).

A-ConvNets classifies 88x88 MSTAR chips with five convolutions and no fully connected layer
(5x5/16 - pool - 5x5/32 - pool - 6x6/64 - pool - 5x5/128 - dropout - 3x3/10). This family keeps the
layout (large kernels, widths 16-32-64-128, max-pooling, no dense hidden layer) with three changes
for the edge and for this code base:

* "same" padding, so any input of at least 16x16 works (the feature-tap probe runs 32x32) and the
  last map keeps some spatial support for the distillation taps;
* BatchNorm after each convolution (folds into the convolution at export, so it costs nothing on
  the device) for fast, stable CPU training;
* the final 3x3/10 convolution over a 3x3 map becomes global average pooling + a linear layer (a
  1x1 convolution on the pooled vector), the shared head every arch exposes (``CmkdNet``).

``aconv`` (width 16) at 88x88: about 0.14 M parameters and 62 M multiply-accumulates per chip.
"""

from __future__ import annotations

from torch import nn

from cmkd_edge.models.base import ARCHS, CmkdNet


def _conv(cin: int, cout: int, k: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.BatchNorm2d(cout),
                               nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class AConvNet(CmkdNet):
    """Four convolution stages of widths (w, 2w, 4w, 8w), kernels (5, 5, 5, 3), three max-pools.

    Args:
        in_channels: bands of the view (1 for a magnitude chip).
        num_classes: K.
        width: channels of the first convolution (16 = A-ConvNets).
        dropout: before the head (A-ConvNets drops 50 % before its last convolution).
        mean, std, clip: input normalisation (see ``InputNorm``).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, dropout: float = 0.5,
                 mean=None, std=None, clip=None) -> None:
        super().__init__(in_channels, num_classes, mean, std, clip)
        w = int(width)
        self.stem = _conv(in_channels, w, 5, pool=True)
        self.stages = nn.Sequential(_conv(w, 2 * w, 5, pool=True), _conv(2 * w, 4 * w, 5, pool=True),
                                    _conv(4 * w, 8 * w, 3, pool=False))
        self._init_head(8 * w, dropout)


@ARCHS.register("aconv", help="radar-chip student after A-ConvNets: 4 convs 16-32-64-128, "
                "~0.14 M parameters, ~62 M MACs at 88x88")
def aconv(in_channels: int, num_classes: int, **kw) -> AConvNet:
    return AConvNet(in_channels, num_classes, **kw)


@ARCHS.register("aconv-wide", help="aconv at width 32 (~0.55 M parameters): a radar-chip teacher")
def aconv_wide(in_channels: int, num_classes: int, **kw) -> AConvNet:
    kw.setdefault("width", 32)
    return AConvNet(in_channels, num_classes, **kw)
