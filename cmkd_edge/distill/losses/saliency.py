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
constant and only the student side is trained (CE + MSE to the teacher's logits). As in the paper,
that reference student is trained to convergence (the reference code's RAVDESS run: 100 epochs,
``ravdess/main_overlap_tag.py --num-epochs``); here up to ``epochs`` with early stopping on its fit
to the teacher (MSE to the teacher's logits on a held-out part of the samples), see
:func:`train_reference_student`. A reference student trained for a few steps does not follow the
teacher, and its "saliency" then measures the teacher alone (issue 11, docs/methods.md s.2).
``diagnose`` uses the given trained student directly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cmkd_edge.distill.dataset_tensors import batched_forward
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


@dataclass
class ReferenceFit:
    """How well Algorithm 1's reference student follows the teacher (reported with the ranking)."""

    epochs: int
    best_epoch: int
    val_mse: float
    val_agreement: float
    train_accuracy: float
    stopped_early: bool


def train_reference_student(
    student: nn.Module,
    xs: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    epochs: int = 100,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    device: torch.device | str = "cpu",
    multilabel: bool = False,
    patience: int | None = 10,
    val_fraction: float = 0.2,
) -> tuple[nn.Module, ReferenceFit]:
    """A copy of ``student`` trained with CE(s(x^b), y) + MSE(s(x^b), t(x^a)) (Algorithm 1) to convergence.

    The teacher is frozen here (its CE term of the paper's joint objective is a constant). With
    ``patience`` set, ``val_fraction`` of the samples are held out and training stops when their MSE
    to the teacher's logits has not improved for ``patience`` epochs (at most ``epochs``); the best
    epoch's weights are returned. ``patience=None`` trains exactly ``epochs`` epochs on all samples.

    Args:
        xs: (N, C, H, W) student views; teacher_logits: (N, K) the frozen teacher's outputs on the
            paired teacher views; labels: (N,) or (N, K) multi-hot.
    Returns:
        the trained copy (eval mode) and its :class:`ReferenceFit`.
    """
    s = copy.deepcopy(student).to(device).train()
    for p in s.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(s.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = xs.shape[0]
    order = torch.randperm(n, generator=gen)
    n_val = int(round(val_fraction * n)) if patience is not None and n >= 10 else 0
    val_idx, fit_idx = order[:n_val], order[n_val:]
    best, best_state, best_epoch, bad, ep = float("inf"), None, 0, 0, 0
    for ep in range(1, epochs + 1):
        s.train()
        for idx in fit_idx[torch.randperm(len(fit_idx), generator=gen)].split(batch_size):
            if len(idx) < 2:
                continue
            x, y, t = xs[idx].to(device), labels[idx].to(device), teacher_logits[idx].to(device)
            out = s(x)
            ce = F.binary_cross_entropy_with_logits(out, y.float()) if multilabel else F.cross_entropy(out, y)
            loss = ce + F.mse_loss(out, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if n_val == 0:
            continue
        mse = _fit(s, xs[val_idx], teacher_logits[val_idx], device)[0]
        if mse < best - 1e-6:
            best, best_epoch, bad = mse, ep, 0
            best_state = copy.deepcopy(s.state_dict())
        else:
            bad += 1
            if bad >= patience:  # type: ignore[operator]
                break
    if best_state is not None:
        s.load_state_dict(best_state)
    s.eval()
    val_mse, val_agree = _fit(s, xs[val_idx], teacher_logits[val_idx], device) if n_val else (float("nan"),) * 2
    with torch.no_grad():
        out = torch.cat([s(xs[i : i + 256].to(device)).cpu() for i in range(0, n, 256)])
    hit = (out > 0) == (labels > 0.5) if multilabel else out.argmax(1) == labels
    acc = float(hit.float().mean())
    fit = ReferenceFit(ep, best_epoch if n_val else ep, val_mse, val_agree, acc, n_val > 0 and ep < epochs)
    return s, fit


@torch.no_grad()
def _fit(model: nn.Module, x: Tensor, t_logits: Tensor, device: torch.device | str) -> tuple[float, float]:
    """(MSE to the teacher's logits, top-1 agreement with the teacher) of ``model`` on ``x``."""
    model.eval()
    out = torch.cat([model(x[i : i + 256].to(device)).cpu() for i in range(0, x.shape[0], 256)])
    return float(F.mse_loss(out, t_logits)), float((out.argmax(1) == t_logits.argmax(1)).float().mean())


def unit_mask(
    saliency: Tensor,
    ratio: float,
    which: Literal["low", "high", "random"] = "low",
    generator: torch.Generator | None = None,
) -> Tensor:
    """(D,) bool mask of round(ratio * D) units: the lowest-saliency (MFH), highest, or a random set.

    ``low`` is what MFH freezes; ``high`` and ``random`` are the controls it must beat (freezing the
    modality-specific units should cost the teacher *less* than freezing a random set of the same size).
    """
    d = saliency.numel()
    k = int(round(ratio * d))
    if which == "low":
        order = torch.argsort(saliency)
    elif which == "high":
        order = torch.argsort(saliency, descending=True)
    elif which == "random":
        order = torch.randperm(d, generator=generator)
    else:
        raise ValueError(f"which must be low|high|random, got {which!r}")
    mask = torch.zeros(d, dtype=torch.bool)
    mask[order[:k]] = True
    return mask


@torch.no_grad()
def frozen_accuracy(
    head: Callable[[Tensor], Tensor], embeds: Tensor, labels: Tensor, mask: Tensor, unit_mean: Tensor | None = None
) -> float:
    """Accuracy of ``head`` on (N, D) ``embeds`` with the ``mask`` units replaced by their mean.

    The mean is over ``embeds`` (the batch, as the reference's ``my_freeze_new``) unless ``unit_mean``
    is given (e.g. the training set's mean, when scoring a test set).
    """
    mean = embeds.mean(0, keepdim=True) if unit_mean is None else unit_mean.view(1, -1).to(embeds)
    return logit_accuracy(head(torch.where(mask[None].to(embeds.device), mean.expand_as(embeds), embeds)), labels)


def logit_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy (multi-class) or per-label accuracy at logit 0 (multi-label), on CPU."""
    logits, labels = logits.cpu(), labels.cpu()
    if labels.dim() > 1:
        return float(((logits > 0) == (labels > 0.5)).float().mean())
    return float((logits.argmax(1) == labels).float().mean())


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


def shuffled_batch_accuracy(
    teacher: ModalityGeneralTeacher,
    embeds: Tensor,
    labels: Tensor,
    batch_size: int = 32,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> float:
    """Accuracy of a modality-general teacher as distillation uses it: on shuffled batches, each
    batch freezing the units to its own mean (``freeze_to="batch"``).

    why shuffled: samples collected in split order come class by class, and a batch of one class
    freezes the units to that class's mean, which leaks the label into the frozen units (MSTAR
    teacher, 75 % frozen: 0.957 with ordered batches of 64, 0.627 with the whole-set mean).
    """
    perm = torch.randperm(len(embeds), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = batched_forward(lambda e: teacher.forward_head(teacher.freeze(e)), embeds[perm], device, batch_size)
    return logit_accuracy(out, labels[perm])


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
