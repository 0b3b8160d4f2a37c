"""MobileNetV2-style edge student (Sandler et al. 2018): inverted residuals with depthwise convolutions.

The stage table is shortened for 32-64 px patches (output stride 16, not 32) so the last feature map
still has spatial extent for feature-based distillation; ReLU6 is kept because it quantizes well.
"""

from __future__ import annotations

from torch import Tensor, nn

from cmkd_edge.models.base import ARCHS, CmkdNet

# (expansion t, output channels c, repeats n, first stride s) - MobileNetV2 Table 2, shortened.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 3, 2), (6, 96, 2, 1))


def _round(ch: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` (vector-friendly), never below 90 % of ``ch``."""
    new = max(divisor, int(ch + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * ch else new


def conv_bn(cin: int, cout: int, k: int, s: int, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = cin * t
        layers = [] if t == 1 else [conv_bn(cin, hidden, 1, 1)]
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(CmkdNet):
    """MobileNetV2-style network for any number of input bands.

    Args:
        width_mult: channel multiplier of every layer (0.5 default: an edge budget).
        last_channels: width of the final 1x1 convolution before pooling (scaled by width_mult
            only when width_mult > 1, as in the paper).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width_mult: float = 0.5,
        last_channels: int = 640,
        dropout: float = 0.1,
        mean=None,
        std=None,
        clip=None,
    ) -> None:
        super().__init__(in_channels, num_classes, mean, std, clip)
        cin = _round(32 * width_mult)
        self.stem = conv_bn(in_channels, cin, 3, 2)
        stages = []
        for t, c, n, s in STAGES:
            cout = _round(c * width_mult)
            blocks = []
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        last = _round(last_channels * max(1.0, width_mult))
        # the final 1x1 conv belongs to the last stage so "last" is the map the head pools
        stages[-1].append(conv_bn(cin, last, 1, 1))
        self.stages = nn.Sequential(*stages)
        self._init_head(last, dropout)


@ARCHS.register("mobilenetv2", help="edge student: MobileNetV2-style, depthwise convs, width 0.5")
def mobilenetv2(in_channels: int, num_classes: int, **kw) -> MobileNetV2:
    return MobileNetV2(in_channels, num_classes, **kw)


@ARCHS.register("mobilenetv2-tiny", help="MobileNetV2-style at width 0.25, 320 last channels (tests, MCUs)")
def mobilenetv2_tiny(in_channels: int, num_classes: int, **kw) -> MobileNetV2:
    kw.setdefault("width_mult", 0.25)
    kw.setdefault("last_channels", 320)
    return MobileNetV2(in_channels, num_classes, **kw)
