"""What every model shares: raw-input normalisation inside the network and named feature taps.

Models take raw view values (reflectance x1e4, SAR dB) and normalise with buffers stored in the state
dict, so the exported ONNX graph carries the same normalisation and training and deployment cannot
disagree. ``forward_all`` returns the feature taps the distillation losses read (timm's
``forward_features`` / ``forward_head`` split keeps them stable across architectures).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cmkd_edge._registry import Registry

#: The ``--arch`` registry; here, beside the base class every family file imports, so registering needs
#: no import of the package (which imports the families).
ARCHS: Registry = Registry("arch")


class InputNorm(nn.Module):
    """Clip raw values to ``clip`` (if any), then per-channel ``(x - mean) / std``.

    Args:
        mean, std: per-channel statistics of the training split, (C,).
        clip: optional (lo, hi) applied before normalisation (e.g. SAR dB outliers).
    """

    def __init__(
        self,
        channels: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        clip: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        mean_t = torch.zeros(channels) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std_t = torch.ones(channels) if std is None else torch.as_tensor(std, dtype=torch.float32)
        if mean_t.shape != (channels,) or std_t.shape != (channels,):
            raise ValueError(f"mean/std must have {channels} entries")
        self.register_buffer("mean", mean_t.view(1, channels, 1, 1).clone())
        # why: a constant band (std 0) must not turn into inf/NaN
        self.register_buffer("inv_std", (1.0 / std_t.clamp_min(1e-6)).view(1, channels, 1, 1).clone())
        # why plain floats: a clamp bound read from a tensor makes the ONNX exporter trace data-dependent
        # scalars; the bounds are recorded in the checkpoint's preprocess spec and config instead.
        self.clip_range = None if clip is None else (float(clip[0]), float(clip[1]))
        self.has_clip = clip is not None

    def forward(self, x: Tensor) -> Tensor:
        if self.clip_range is not None:
            x = x.clamp(self.clip_range[0], self.clip_range[1])
        return (x - self.mean) * self.inv_std


class FeatureTaps:
    """``forward_all``/``forward`` from a class's ``forward_features`` and ``forward_head``.

    Shared by every arch and by wrappers that change one tap (the MFH modality-general teacher), so
    "logits come from the pooled embed" is written once.
    """

    def forward_all(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and feature taps in one pass (what the distillation losses consume)."""
        feats = self.forward_features(x)
        return self.forward_head(feats["embed"]), feats

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_all(x)[0]


class CmkdNet(FeatureTaps, nn.Module):
    """Base of all archs: ``InputNorm`` -> ``body`` (stages) -> global pool -> linear head.

    Subclasses build ``self.stages`` (an ``nn.Sequential`` of stages, at least two) and set
    ``self.embed_dim``. Feature taps: "map" = output of the second-to-last stage, "last" = output of
    the last stage (the patch tokens SemBridge attends over), "embed" = pooled last stage.
    """

    def __init__(self, in_channels: int, num_classes: int, mean=None, std=None, clip=None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.norm = InputNorm(in_channels, mean, std, clip)
        self.config: dict[str, Any] = {}

    def _init_head(self, embed_dim: int, dropout: float = 0.0) -> None:
        self.embed_dim = embed_dim
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(embed_dim, self.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem_forward(self, x: Tensor) -> Tensor:
        """Normalise raw values and apply the stem."""
        return self.stem(self.norm(x))

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """Named feature taps for (N, C, H, W) raw input: "map", "last", "embed"."""
        h = self.stem_forward(x)
        for stage in self.stages[:-1]:
            h = stage(h)
        fmap = h
        last = self.stages[-1](h)
        embed = torch.flatten(self.pool(last), 1)
        return {"map": fmap, "last": last, "embed": embed}

    def forward_head(self, embed: Tensor) -> Tensor:
        """Logits (N, K) from the penultimate vector (N, D)."""
        return self.head(self.dropout(embed))

    @property
    def feature_dims(self) -> dict[str, int]:
        """Channel counts of the feature taps, found by one tiny forward pass (cached)."""
        if not hasattr(self, "_feature_dims"):
            was_training = self.training
            self.eval()
            with torch.no_grad():
                p = next(self.parameters())
                feats = self.forward_features(torch.zeros(1, self.in_channels, 32, 32, device=p.device))
            self.train(was_training)
            self._feature_dims = {k: int(v.shape[1]) for k, v in feats.items()}
        return self._feature_dims
