"""Algorithm 1 of the MFH paper (Xue et al., ICLR 2023, arXiv 2206.06487) for image models.

Algorithm 1 scores each teacher "channel" k by how much permuting it across samples increases the
teacher-student output distance: a channel the student can follow (modality-general) moves the
teacher's output away from the student's when shuffled; a teacher-modality-specific one does not
(the student never tracked it). Scores are min-max normalised; high = modality-general.

For images the channels are the units of a chosen teacher layer. Only the penultimate vector
(``feats["embed"]``, layer ``"embed"``) is supported by the model contract without re-running the
backbone, and is what ``distill --method mfh`` and ``diagnose`` use: its permuted values go through
``forward_head`` only. Deviation from the paper, stated: the paper trains teacher and student jointly
with CE + CE + MSE; here the teacher is the already-trained (frozen) one, so its CE term is a
constant and only the student side is trained (CE + MSE to the teacher's logits) for a few epochs -
see :func:`train_reference_student`. ``diagnose`` uses the given trained student directly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cmkd_edge.models.base import FeatureTaps


@torch.no_grad()
def permutation_saliency(
    head: Callable[[Tensor], Tensor],
    feats: Tensor,
    reference: Tensor,
    repeats: int = 100,
    generator: torch.Generator | None = None,
    normalise: bool = True,
    chunk: int = 8,
) -> Tensor:
    """Algorithm 1: mean increase of MSE(head(feats with unit k permuted), reference) per unit k.

    Args:
        head: maps (N, D, ...) teacher features to teacher outputs (N, K).
        feats: (N, D) or (N, D, h, w) teacher features of the paired samples.
        reference: (N, K) the student's outputs on the same samples.
        repeats: permutations per unit (M; 100 in the paper).
        normalise: min-max normalise to [0, 1].
        chunk: permutations evaluated per head call.
    Returns:
        (D,) saliency; high = modality-general.
    """
    n, d = feats.shape[:2]
    base = F.mse_loss(head(feats), reference)
    out = torch.zeros(d, dtype=torch.float64)
    for k in range(d):
        total = 0.0
        for start in range(0, repeats, chunk):
            m = min(chunk, repeats - start)
            perms = torch.stack([torch.randperm(n, generator=generator) for _ in range(m)])
            x = feats.unsqueeze(0).repeat(m, *([1] * feats.dim()))  # (m, N, D, ...)
            x[:, :, k] = feats[perms, k]
            o = head(x.reshape(m * n, *feats.shape[1:])).reshape(m, n, -1)
            total += float(((o - reference.unsqueeze(0)) ** 2).mean(dim=(1, 2)).sum())
        out[k] = total / repeats - float(base)
    if normalise:
        lo, hi = out.min(), out.max()
        out = (out - lo) / (hi - lo).clamp_min(1e-12)
    return out.float()


def train_reference_student(
    student: nn.Module,
    xs: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    device: torch.device | str = "cpu",
    multilabel: bool = False,
) -> nn.Module:
    """A copy of ``student`` trained briefly with CE(s(x^b), y) + MSE(s(x^b), t(x^a)) (Algorithm 1).

    The teacher is frozen here (its CE term of the paper's joint objective is a constant).
    """
    s = copy.deepcopy(student).to(device).train()
    opt = torch.optim.Adam(s.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = xs.shape[0]
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            if len(idx) < 2:
                continue
            x, y, t = xs[idx].to(device), labels[idx].to(device), teacher_logits[idx].to(device)
            out = s(x)
            ce = F.binary_cross_entropy_with_logits(out, y.float()) if multilabel else F.cross_entropy(out, y)
            loss = ce + F.mse_loss(out, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return s.eval()


class ModalityGeneralTeacher(FeatureTaps, nn.Module):
    """A teacher whose low-saliency ``embed`` units are frozen to their mean (MFH, methods.md s.2).

    Args:
        teacher: a cmkd-edge model (``forward_features``, ``forward_head``).
        frozen: (D,) bool mask of units to freeze.
        unit_mean: (D,) the units' mean over the training set (used when ``freeze_to="dataset"``).
        freeze_to: "batch" (the current batch's mean, methods.md) or "dataset" (the stored mean, so a
            prediction does not depend on the rest of its batch).
    """

    def __init__(
        self,
        teacher: nn.Module,
        frozen: Tensor,
        unit_mean: Tensor,
        freeze_to: Literal["batch", "dataset"] = "batch",
    ) -> None:
        super().__init__()
        self.teacher = teacher
        self.freeze_to = freeze_to
        self.register_buffer("frozen", frozen.bool().clone())
        self.register_buffer("unit_mean", unit_mean.float().clone())
        self.config = getattr(teacher, "config", {})

    def freeze(self, embed: Tensor) -> Tensor:
        """Replace the frozen units of (N, D) ``embed`` by their batch (or dataset) mean."""
        mean = embed.mean(0, keepdim=True) if self.freeze_to == "batch" else self.unit_mean[None].to(embed)
        return torch.where(self.frozen[None], mean.expand_as(embed), embed)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        feats = dict(self.teacher.forward_features(x))
        feats["embed"] = self.freeze(feats["embed"])
        return feats

    def forward_head(self, embed: Tensor) -> Tensor:
        return self.teacher.forward_head(embed)

    @property
    def feature_dims(self) -> dict[str, int]:
        return self.teacher.feature_dims


def retrain_head(
    teacher: ModalityGeneralTeacher,
    embeds: Tensor,
    labels: Tensor,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    multilabel: bool = False,
) -> None:
    """Fine-tune the teacher's head on its frozen-unit features (the image analogue of retraining the
    modality-general teacher in the Gaussian case). Only parameters that ``forward_head`` uses change."""
    params = [p for p in teacher.teacher.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(embeds.shape[0], generator=gen).split(batch_size):
            e = teacher.freeze(embeds[idx].to(teacher.frozen.device))
            out = teacher.forward_head(e)
            y = labels[idx].to(out.device)
            loss = F.binary_cross_entropy_with_logits(out, y.float()) if multilabel else F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for p in params:
        p.requires_grad_(False)
