"""ResNet-style networks for small overhead patches (He et al. 2016, BasicBlock).

The stem is a stride-2 3x3 convolution without max-pooling: 64x64 Sentinel-2 patches keep enough
spatial resolution (a 7x7/s2 stem + pool would leave 2x2 maps) while CPU training stays affordable.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from cmkd_edge.models.base import ARCHS, CmkdNet


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(CmkdNet):
    """ResNet with BasicBlocks: four stages of widths (w, 2w, 4w, 8w), strides (1, 2, 2, 2).

    Args:
        in_channels: bands of the view (any number: 2 for SAR, 3 for RGB, 13 for MS).
        num_classes: K.
        width: channels of the first stage (64 = ResNet-18).
        blocks: blocks per stage ((2, 2, 2, 2) = ResNet-18).
        mean, std, clip: input normalisation (see ``InputNorm``).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 64,
        blocks: Sequence[int] = (2, 2, 2, 2),
        dropout: float = 0.0,
        mean=None,
        std=None,
        clip=None,
    ) -> None:
        super().__init__(in_channels, num_classes, mean, std, clip)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            first_stride = 1 if i == 0 else 2
            layers = [BasicBlock(cin if j == 0 else cout, cout, first_stride if j == 0 else 1) for j in range(n)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self._init_head(cin, dropout)


@ARCHS.register("resnet18", help="ResNet-18 (BasicBlock 2-2-2-2, width 64): the default teacher")
def resnet18(in_channels: int, num_classes: int, **kw) -> ResNet:
    kw.setdefault("width", 64)
    return ResNet(in_channels, num_classes, blocks=kw.pop("blocks", (2, 2, 2, 2)), **kw)


@ARCHS.register("resnet18-small", help="ResNet-18 layout at width 32 (a CPU-friendly teacher)")
def resnet18_small(in_channels: int, num_classes: int, **kw) -> ResNet:
    kw.setdefault("width", 32)
    return ResNet(in_channels, num_classes, blocks=kw.pop("blocks", (2, 2, 2, 2)), **kw)


@ARCHS.register("resnet-narrow", help="edge student: ResNet 1-1-1-1, width 16 (~0.3 M parameters)")
def resnet_narrow(in_channels: int, num_classes: int, **kw) -> ResNet:
    kw.setdefault("width", 16)
    return ResNet(in_channels, num_classes, blocks=kw.pop("blocks", (1, 1, 1, 1)), **kw)
