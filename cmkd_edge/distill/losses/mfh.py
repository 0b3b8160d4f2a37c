"""Modality-focusing KD (Xue et al., ICLR 2023, arXiv 2206.06487): KD from a modality-general teacher.

The Modality Focusing Hypothesis: crossmodal KD helps only through the teacher's decisive features
that are shared with the student's modality. ``setup`` therefore

1. scores the units of the teacher's penultimate layer (``layer="embed"``) with Algorithm 1's
   permutation saliency (:func:`cmkd_edge.distill.losses.saliency.permutation_saliency`, M = ``repeats``) against
   a copy of the student trained *to convergence* with CE + MSE to the frozen teacher's logits - at
   most ``saliency_epochs`` (100, the reference code's RAVDESS run), early-stopped after
   ``saliency_patience`` epochs without a better fit to the teacher on held-out samples (the paper
   trains both jointly with CE + CE + MSE; with a frozen teacher its CE is constant);
2. freezes the ``ratio`` (0.75, the paper's and ``main_overlap_tag.py --ratio``) lowest-saliency units
   to their batch mean (``freeze_to``; the reference's ``my_freeze_new``), wrapping the teacher in
   :class:`~cmkd_edge.distill.losses.saliency.ModalityGeneralTeacher` that replaces ``ctx.teacher``,
   and logs the control: the teacher's accuracy with a random set of units of the same size frozen;
3. optionally retrains the teacher's head on the frozen features for ``head_epochs`` (off by default:
   the reference freezes without retraining on real data; retraining is the analogue of the
   Gaussian experiments' retrained modality-general teacher);

then trains the student with logit KD (:class:`LogitKD`) from the modality-general teacher, by default
as the reference does (``train_network_distill`` with ``--gt-weight 0 --pl-weight 1``): pure
KL(p_t || p_s) at T = 1, ``KLDivLoss(reduction="mean")`` (mean over samples and classes), no CE.
``ce_weight=1 kd_weight=1 temperature=4 reduction=batchmean t2=true`` gives this project's earlier
CE + KL at T = 4 x T^2. The ranking and the fit are written to ``<run>/mfh_saliency.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from cmkd_edge.distill.dataset_tensors import batched_forward, collect_views
from cmkd_edge.distill.losses.base import DistillContext
from cmkd_edge.distill.losses.kd import KDConfig, LogitKD
from cmkd_edge.errors import ConfigError


@dataclass(frozen=True)
class MFHConfig(KDConfig):
    """Options of ``--method mfh``.

    Defaults are the paper's / reference code's (arXiv 2206.06487; zihuixue/MFH ``ravdess/``).

    Attributes:
        ce_weight, kd_weight, temperature, reduction, t2: 0, 1, 1, mean, no T^2 - pure KL at T = 1.
        layer: teacher layer whose units are scored ("embed", the penultimate vector).
        ratio: fraction of units frozen (the lowest-saliency ones), in [0, 1); 0.75.
        repeats: permutations per unit (M; the paper uses 100 - costlier for wide layers).
        saliency_epochs: at most this many epochs for the reference student (100).
        saliency_patience: early stopping on the reference student's held-out MSE to the teacher
            (10 epochs; None = exactly ``saliency_epochs`` epochs, no hold-out).
        saliency_lr: Adam learning rate of the reference student.
        freeze_to: "batch" (methods.md, the reference) or "dataset" (training-set mean).
        head_epochs: epochs of retraining the teacher's head on the frozen features (0 = off).
        max_samples: samples of the training split used for saliency (None = all).
    """

    ce_weight: float = 0.0
    kd_weight: float = 1.0
    temperature: float = 1.0
    reduction: Literal["batchmean", "mean"] = "mean"
    t2: bool = False
    layer: str = "embed"
    ratio: float = 0.75
    repeats: int = 20
    saliency_epochs: int = 100
    saliency_patience: int | None = 10
    saliency_lr: float = 1e-3
    freeze_to: Literal["batch", "dataset"] = "batch"
    head_epochs: int = 0
    max_samples: int | None = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layer != "embed":
            raise ValueError(f"mfh layer must be 'embed' (the penultimate units), got {self.layer!r}")
        if not 0 <= self.ratio < 1:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio}")
        if self.repeats < 1 or self.saliency_epochs < 0 or self.head_epochs < 0:
            raise ValueError("repeats >= 1, saliency_epochs >= 0, head_epochs >= 0 required")
        if self.saliency_patience is not None and self.saliency_patience < 1:
            raise ValueError(f"saliency_patience must be >= 1 or none, got {self.saliency_patience}")
        if self.freeze_to not in ("batch", "dataset"):
            raise ValueError(f"freeze_to must be batch|dataset, got {self.freeze_to!r}")


class ModalityFocusing(LogitKD):
    """Logit KD from a teacher whose modality-specific (low-saliency) units are frozen."""

    name = "mfh"
    Config = MFHConfig

    def __init__(self, cfg: MFHConfig | None = None, task: str = "multiclass") -> None:
        super().__init__(cfg, task)
        self.register_buffer("saliency", torch.zeros(0))

    def setup(self, ctx: DistillContext) -> None:
        """Score the teacher's units, freeze the low-saliency ones, replace ``ctx.teacher``."""
        from cmkd_edge.distill.losses.saliency import (
            ModalityGeneralTeacher,
            frozen_accuracy,
            logit_accuracy,
            permutation_saliency,
            retrain_head,
            shuffled_batch_accuracy,
            train_reference_student,
            unit_mask,
        )

        c = self.cfg
        if ctx.teacher is None:
            raise ConfigError("mfh needs a teacher", "pass --teacher")
        if isinstance(ctx.teacher, ModalityGeneralTeacher):
            return  # why: setup twice (e.g. a resume path) must not wrap twice
        if (np.asarray(ctx.train_set.labels) < 0).any():
            raise ConfigError("mfh needs a label for every training sample (Algorithm 1 trains a "
                              "reference student on them)", "use kd, ds or sembridge with few labels")
        super().setup(ctx)
        multilabel = self.task == "multilabel"
        views, labels = collect_views(ctx.train_set, [ctx.teacher_view, ctx.student_view], c.max_samples)
        teacher = ctx.teacher.eval()
        t_logits, t_feats = batched_forward(teacher.forward_all, views[ctx.teacher_view], ctx.device)
        embeds = t_feats[c.layer]
        ctx.log(f"mfh: training a reference student (Algorithm 1), at most {c.saliency_epochs} epochs")
        ref, fit = train_reference_student(
            ctx.student,
            views[ctx.student_view],
            t_logits,
            labels,
            c.saliency_epochs,
            c.saliency_lr,
            seed=ctx.seed,
            device=ctx.device,
            multilabel=multilabel,
            patience=c.saliency_patience,
        )
        ctx.log(
            f"mfh: reference student {fit.epochs} epochs (best {fit.best_epoch}), held-out MSE to the teacher "
            f"{fit.val_mse:.4f}, agreement {fit.val_agreement:.3f}, train accuracy {fit.train_accuracy:.3f}"
        )
        s_logits = batched_forward(ref, views[ctx.student_view], ctx.device)
        del ref
        head = teacher.forward_head
        with torch.no_grad():
            sal = permutation_saliency(
                lambda e: head(e.to(ctx.device)).cpu(),
                embeds,
                s_logits,
                c.repeats,
                torch.Generator().manual_seed(ctx.seed),
            )
        frozen = unit_mask(sal, c.ratio, "low")
        n_freeze = int(frozen.sum())
        gen = torch.Generator().manual_seed(ctx.seed)
        with torch.no_grad():
            control = {
                "low_saliency": frozen_accuracy(head, embeds.to(ctx.device), labels, frozen),
                "high_saliency": frozen_accuracy(head, embeds.to(ctx.device), labels, unit_mask(sal, c.ratio, "high")),
                "random_mean_of_10": sum(
                    frozen_accuracy(head, embeds.to(ctx.device), labels, unit_mask(sal, c.ratio, "random", gen))
                    for _ in range(10)
                ) / 10,
            }
        ctx.log(
            f"mfh: teacher train accuracy with {c.ratio:.0%} of units frozen: low-saliency "
            f"{control['low_saliency']:.3f}, random {control['random_mean_of_10']:.3f}, "
            f"high-saliency {control['high_saliency']:.3f}"
        )
        if control["low_saliency"] < control["random_mean_of_10"]:
            ctx.log("mfh: warning: freezing the low-saliency units costs the teacher more than a random set")
        mg = ModalityGeneralTeacher(teacher, frozen, embeds.mean(0), c.freeze_to).to(ctx.device)
        if c.head_epochs > 0:
            import copy

            mg.teacher = copy.deepcopy(teacher)
            retrain_head(mg, embeds, labels, c.head_epochs, seed=ctx.seed, multilabel=multilabel)
        mg.eval()
        acc_before = logit_accuracy(t_logits, labels)
        # as training sees it: shuffled batches (ordered ones leak each class's mean into the frozen units)
        acc_after = shuffled_batch_accuracy(mg, embeds, labels, seed=ctx.seed, device=ctx.device)
        ctx.log(
            f"mfh: froze {n_freeze}/{sal.numel()} units; teacher train accuracy {acc_before:.3f} -> {acc_after:.3f}"
        )
        self.saliency = sal.to(self.saliency.device)
        ctx.teacher = mg
        extra = {"reference_student": dataclasses.asdict(fit), "frozen_control": control}
        _write_ranking(ctx, sal, frozen, acc_before, acc_after, extra)


def _write_ranking(
    ctx: DistillContext, sal: torch.Tensor, frozen: torch.Tensor, before: float, after: float, extra: dict
) -> None:
    from cmkd_edge.fsutil import atomic_write_json

    try:
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            ctx.run_dir / "mfh_saliency.json",
            {
                "layer": "embed",
                "ranking": torch.argsort(sal, descending=True).tolist(),
                "saliency": [round(float(v), 6) for v in sal],
                "frozen": frozen.nonzero().flatten().tolist(),
                "teacher_train_accuracy": {"original": before, "modality_general": after},
                **extra,
            },
        )
    except OSError as exc:  # why: a read-only run dir must not stop training; the log has the figures
        ctx.log(f"mfh: could not write mfh_saliency.json ({exc})")
