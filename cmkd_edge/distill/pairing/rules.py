"""The pairing rules and the teacher gallery they pair into (see :mod:`cmkd_edge.distill.pairing`).

A rule maps every student training sample (its index in the training split) to the teacher-modality
sample whose teacher output teaches it. ``given`` keeps the dataset's own pairs; the other rules pair
into a :class:`Gallery` read once, without augmentation, from ``--teacher-data`` (or, without it, from
the training split's own teacher view: the asymmetric setting run on paired data). Rules that draw
(``random``, ``class``) redraw every epoch from (seed, epoch), so a resumed run draws what an
uninterrupted one draws; ``sembridge`` keeps its pairs in the checkpoint (re-matching depends on the
student's state).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from cmkd_edge.distill.dataset_tensors import batched_forward, collect_views
from cmkd_edge.distill.losses.base import Batch, DistillContext
from cmkd_edge.errors import CheckpointError, ConfigError, DataError


@dataclass
class Gallery:
    """Teacher-modality samples a student sample can be paired with.

    Attributes:
        x: ``(N_g, C, H, W)`` the teacher's view, unaugmented.
        labels: ``(N_g,)`` int64 class of each gallery sample, -1 where unknown. The teacher's
            modality is the labelled one in this setting, so a gallery drawn from the student's own
            data keeps the labels ``--labelled-fraction`` hides from the student.
        student_x: the student's view of the same samples, when the gallery data can yield it
            (SemBridge trains its matcher on these pairs, as the reference trains it on the teacher
            side's MS/RGB pairs); None otherwise.
        where: where the gallery came from (for logs and checkpoints).
    """

    x: Tensor
    labels: Tensor
    student_x: Tensor | None
    where: str
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.x.shape[0])


def open_gallery(data: str | None, split_file: str | None, teacher_view: str, student_view: str,
                 seed: int, class_names: list[str]) -> Gallery:
    """The training split of ``data`` (``split_file`` picks it) in the teacher's view, as a gallery.

    Raises:
        DataError: the data's classes differ from the student's, or it cannot give the teacher view.
    """
    from cmkd_edge.data import open_dataset
    from cmkd_edge.runtime.metrics import require_class_names

    views = [teacher_view] if student_view == teacher_view else [teacher_view, student_view]
    try:
        ds = open_dataset(data, views=views, split="train", seed=seed, augment=False, split_file=split_file)
    except (DataError, ConfigError):
        views = [teacher_view]  # e.g. optical teacher data that has no SAR to make the student view from
        ds = open_dataset(data, views=views, split="train", seed=seed, augment=False, split_file=split_file)
    require_class_names(ds.class_names, class_names, DataError,
                        "the teacher data's classes ({got}) differ from the student's ({want})")
    xs, labels = collect_views(ds, views)
    if labels.dim() != 1:
        raise ConfigError("unpaired pairing needs single-label classes (the teacher data is multi-label)",
                          "use --pairing given")
    where = f"{data or 'synthetic'} train split" + (f" ({split_file})" if split_file else "")
    return Gallery(xs[teacher_view], labels.long(), xs.get(student_view) if len(views) > 1 else None,
                   where, list(ds.ids))


def own_gallery(train_set: Any, teacher_view: str, student_view: str) -> Gallery:
    """The training split's own teacher view as the gallery (unpaired rules on paired data)."""
    views = [teacher_view] if student_view == teacher_view else [teacher_view, student_view]
    xs, _ = collect_views(train_set, views)
    labels = torch.as_tensor(np.asarray(train_set.true_labels), dtype=torch.int64)
    return Gallery(xs[teacher_view], labels, xs[student_view], "the training split's own teacher view",
                   list(train_set.ids))


@dataclass(frozen=True)
class NoOptions:
    """This rule takes no options."""


class Pairing:
    """Base of the rules: a pair index per student sample into the gallery, served as teacher input."""

    name: ClassVar[str] = "base"
    uses_gallery: ClassVar[bool] = True
    Config: ClassVar[type] = NoOptions

    def __init__(self, cfg: Any | None = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()
        self.gallery: Gallery | None = None
        self.pair: np.ndarray | None = None
        self.labels = np.zeros(0, np.int64)
        self.true_labels = np.zeros(0, np.int64)
        self.seed = 0

    def setup(self, ctx: DistillContext, gallery: Gallery | None) -> None:
        """Bind the rule to the run: the gallery and the student's (visible and true) labels."""
        self.gallery = gallery
        self.seed = ctx.seed
        ds = ctx.train_set
        self.labels = np.asarray(ds.labels)
        self.true_labels = np.asarray(getattr(ds, "true_labels", ds.labels))
        if self.labels.ndim != 1:
            raise ConfigError(f"pairing {self.name} needs single-label classes (the data is multi-label)",
                              "use --pairing given")

    def on_epoch_start(self, epoch: int, ctx: DistillContext) -> None:
        """Redraw or re-match the pairs for ``epoch`` (0-based); called on resumed runs too."""

    def teacher_input(self, batch: Batch, ctx: DistillContext, method: Any) -> Tensor:
        """The teacher's input for this batch: the paired gallery samples."""
        assert self.gallery is not None and self.pair is not None
        idx = torch.as_tensor(self.pair[batch.index.cpu().numpy()], dtype=torch.long)
        return self.gallery.x[idx].to(batch.views[ctx.student_view].device)

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps to resume (rules that redraw from (seed, epoch) keep nothing)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` on resume."""

    def report(self) -> dict[str, Any]:
        """How good the pairs are where the truth is known: the share of same-class pairs."""
        out: dict[str, Any] = {"rule": self.name}
        if self.gallery is None or self.pair is None:
            return out
        g = self.gallery.labels.numpy()[self.pair]
        known = (self.true_labels >= 0) & (g >= 0)
        hidden = known & (self.labels < 0)
        out.update(gallery=self.gallery.where, n_gallery=len(self.gallery),
                   distinct_partners=int(len(np.unique(self.pair))))
        if known.any():
            out["same_class_rate"] = round(float((g[known] == self.true_labels[known]).mean()), 4)
        if hidden.any():
            out["same_class_rate_unlabelled"] = round(float((g[hidden] == self.true_labels[hidden]).mean()), 4)
        return out


class GivenPairing(Pairing):
    """The dataset's own pairs: the teacher sees its view of the student's sample (same augmentation)."""

    name = "given"
    uses_gallery = False

    def teacher_input(self, batch: Batch, ctx: DistillContext, method: Any) -> Tensor:
        return method.teacher_input(batch, ctx)

    def report(self) -> dict[str, Any]:
        return {"rule": self.name}


class RandomPairing(Pairing):
    """A uniformly random gallery sample per student sample, redrawn every epoch: what pairing without
    any knowledge gives (the lower bound the matcher must beat)."""

    name = "random"

    def on_epoch_start(self, epoch: int, ctx: DistillContext) -> None:
        assert self.gallery is not None
        rng = np.random.default_rng([self.seed, epoch, 0xA1])
        self.pair = rng.integers(0, len(self.gallery), size=len(self.labels))


class ClassPairing(Pairing):
    """A random gallery sample of the student sample's own class, redrawn every epoch.

    For labelled student samples this is fair; for the unlabelled ones it reads the labels the
    experiment hid (``true_labels``): an oracle bound for what a perfect matcher could give, never a
    recipe for data whose labels do not exist (there it refuses to run).
    """

    name = "class"

    def setup(self, ctx: DistillContext, gallery: Gallery | None) -> None:
        super().setup(ctx, gallery)
        assert self.gallery is not None
        missing = int((self.true_labels < 0).sum())
        if missing:
            raise DataError(f"class pairing needs the class of every student sample (an oracle bound); "
                            f"{missing} have none in the data", "use --pairing sembridge or random")
        g = self.gallery.labels.numpy()
        self._members = {int(c): np.flatnonzero(g == c) for c in np.unique(self.true_labels)}
        empty = [c for c, m in self._members.items() if len(m) == 0]
        if empty:
            raise DataError(f"the teacher gallery has no sample of class(es) {empty}",
                            "the gallery must cover every class")

    def on_epoch_start(self, epoch: int, ctx: DistillContext) -> None:
        rng = np.random.default_rng([self.seed, epoch, 0xC1])
        pair = np.empty(len(self.true_labels), dtype=np.int64)
        for c, members in self._members.items():
            who = np.flatnonzero(self.true_labels == c)
            pair[who] = members[rng.integers(0, len(members), size=len(who))]
        self.pair = pair


@dataclass(frozen=True)
class SemBridgePairingConfig:
    """Options of ``--pairing sembridge`` (``--pairing-opt key=value``).

    Attributes:
        matcher: a matcher file from ``cmkd-edge match``; None trains one in setup on the gallery's
            (teacher view, student view) pairs for ``matcher_epochs`` epochs.
        matcher_temperature: the matcher's contrastive tau (0.1, L2-normalised embeddings).
        rematch, rematch_e0, rematch_de, rematch_emu, rematch_temperature: KL re-matching at epochs
            e_t = e0 + sum_{i=1..t}(de + emu (i - 1)) (the authors' 30, 30, 5; T = 3).
    """

    matcher: str | None = None
    matcher_epochs: int = 20
    matcher_temperature: float = 0.1
    rematch: bool = True
    rematch_e0: int = 30
    rematch_de: int = 30
    rematch_emu: int = 5
    rematch_temperature: float = 3.0

    def __post_init__(self) -> None:
        if self.matcher_epochs < 0 or self.rematch_de <= 0 or self.rematch_e0 < 0 or self.rematch_emu < 0:
            raise ValueError("matcher_epochs >= 0, rematch_e0 >= 0, rematch_de > 0, rematch_emu >= 0 required")
        if self.matcher_temperature <= 0 or self.rematch_temperature <= 0:
            raise ValueError("matcher_temperature and rematch_temperature must be > 0")


class SemBridgePairing(Pairing):
    """SemBridge's Student-Friendly Matching (arXiv 2511.08901, methods.md s.4) for unpaired data.

    Static matching: the student's training samples and the gallery are embedded by a CLIP-style
    matcher; a labelled student sample is paired with the most similar gallery sample of its class,
    an unlabelled one (its class unknown) with the most similar gallery sample of any class. At the
    scheduled epochs each student sample is re-paired with the gallery sample whose softened teacher
    prediction has the least KL to the student's current prediction (same class where known).
    """

    name = "sembridge"
    Config = SemBridgePairingConfig

    def setup(self, ctx: DistillContext, gallery: Gallery | None) -> None:
        from cmkd_edge.distill.losses.matching import (
            embed_all,
            load_matcher,
            match_by_similarity,
            rematch_epochs,
            train_matcher,
        )

        super().setup(ctx, gallery)
        assert self.gallery is not None and ctx.teacher is not None
        c = self.cfg
        views, _ = collect_views(ctx.train_set, [ctx.student_view])
        self._bank = views[ctx.student_view]
        if c.matcher:
            matcher = load_matcher(c.matcher, self.gallery.x.shape[1], self._bank.shape[1])
        else:
            if self.gallery.student_x is None:
                raise DataError(f"the teacher gallery ({self.gallery.where}) cannot give the student's view "
                                f"{ctx.student_view!r}, so no matcher can be trained on its pairs",
                                "train one with `cmkd-edge match` and pass --pairing-opt matcher=FILE")
            ctx.log(f"pairing sembridge: training the matcher for {c.matcher_epochs} epochs "
                    f"on {len(self.gallery)} gallery pairs")
            matcher = train_matcher(self.gallery.x, self.gallery.student_x, epochs=c.matcher_epochs,
                                    seed=ctx.seed, temperature=c.matcher_temperature)
        zs = embed_all(matcher.embed_student, self._bank)
        zt = embed_all(matcher.embed_teacher, self.gallery.x)
        s_lab = torch.as_tensor(self.labels, dtype=torch.long)
        self.pair = match_by_similarity(zs, zt, s_lab, self.gallery.labels).numpy()
        ctx.teacher.eval()
        self._t_logits = batched_forward(lambda x: ctx.teacher.forward_all(x)[0], self.gallery.x, ctx.device)
        self._schedule = set(rematch_epochs(c.rematch_e0, c.rematch_de, c.rematch_emu, 10**6)) if c.rematch else set()
        ctx.log(f"pairing sembridge: {self.report()}")

    def on_epoch_start(self, epoch: int, ctx: DistillContext) -> None:
        from cmkd_edge.distill.losses.matching import rematch_by_kl

        if epoch not in self._schedule:
            return
        was = ctx.student.training
        ctx.student.eval()
        s_logits = batched_forward(lambda x: ctx.student.forward_all(x)[0], self._bank, ctx.device)
        ctx.student.train(was)
        s_lab = torch.as_tensor(self.labels, dtype=torch.long)
        new = rematch_by_kl(s_logits, self._t_logits, s_lab, self.gallery.labels,
                            self.cfg.rematch_temperature).numpy()
        changed = float((new != self.pair).mean())
        self.pair = new
        ctx.log(f"pairing sembridge: re-matched at epoch {epoch}, {changed:.0%} of pairs changed; {self.report()}")

    def state(self) -> dict[str, Any]:
        return {"pair": torch.as_tensor(self.pair)}

    def load_state(self, state: dict[str, Any]) -> None:
        pair = state.get("pair")
        if pair is None or len(pair) != len(self.labels):
            raise CheckpointError("the checkpoint's sembridge pairs do not fit this training split")
        self.pair = np.asarray(pair, dtype=np.int64)
