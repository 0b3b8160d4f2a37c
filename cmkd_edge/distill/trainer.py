"""One trainer for teacher training (method ``none``) and for every distillation method.

The trainer knows the :class:`~cmkd_edge.distill.losses.base.DistillMethod` interface only: it calls
``setup`` once, ``on_epoch_start`` each epoch, ``teacher_input`` and the criterion each step, puts the
method's parameters in the optimizer and its state in the checkpoint, and never branches on the
method's name (torchdistill ``core/distillation.py``). Everything about a run - seeding, the
schedule, resume, best-on-validation, the single test evaluation - lives here.

Files (rank 0 only): ``last.pt`` every epoch (with ``train_state``), ``best.pt`` holding the weights
the run's rule deploys (:mod:`cmkd_edge.distill.weights`: on a better validation score, the last
epoch's, or an average of them; with a rule that does not pick on validation ``val-best.pt`` keeps
the best validation epoch for comparison), ``metrics.csv``, ``split.csv``, ``labelled.csv`` (when
some labels are hidden) and,
at the end, ``summary.json``.

Few labels (docs/methods.md s.5): training samples without a label (the data's own, or hidden by
``labelled_fraction``) take part only through the teacher - the label loss skips them - and the
batches then mix labelled and unlabelled samples (:class:`~cmkd_edge.distill.loaders.LabelledBatchSampler`);
a run without a teacher trains on its labelled samples only, for the same number of steps. The
teacher's input comes from the run's pairing rule (:mod:`cmkd_edge.distill.pairing`): the sample's own
teacher view, or a gallery sample paired by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cmkd_edge.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from cmkd_edge.distill import distributed
from cmkd_edge.distill.config import TrainConfig
from cmkd_edge.distill.evaluation import compatible_view, evaluate_model, resolve_device
from cmkd_edge.distill.loaders import LabelledBatchSampler, make_loader, to_batch
from cmkd_edge.distill.losses import build_method
from cmkd_edge.distill.losses.base import DistillContext, LossOutput, ModelOutput
from cmkd_edge.distill.progress import Reporter
from cmkd_edge.distill.runstate import (
    build_scheduler,
    epoch_seed,
    rng_state,
    seed_everything,
    set_rng_state,
    write_metrics_csv,
)
from cmkd_edge.errors import CheckpointError, ConfigError, DataError
from cmkd_edge.fsutil import atomic_write_json, sha256_file
from cmkd_edge.runtime.contract.records import CheckpointMeta, LabelsSeen, ModelConfig, TeacherRef, ViewInfo
from cmkd_edge.runtime.metrics import DEFAULT_SELECT, SCALARS, require_class_names, scalars

#: Config fields a resumed run must share with the run it continues.
RESUME_FIXED = ("data", "view", "arch", "arch_options", "teacher", "method", "seed", "batch_size",
                "labelled_fraction", "label_seed", "pairing", "teacher_data", "weights")


class StudentStep(nn.Module):
    """Student forward + criterion as one module, so DDP syncs student *and* method gradients."""

    def __init__(self, student: nn.Module, method: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.method = method

    def forward(self, x: torch.Tensor, t_out: ModelOutput | None, targets: torch.Tensor) -> LossOutput:
        s_out = ModelOutput(*self.student.forward_all(x))
        return self.method(s_out, t_out, targets)


def _dataset_epoch(dataset: Any, epoch: int) -> None:
    """Make the dataset's augmentation stream a function of (seed, epoch) alone."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


def train(config: TrainConfig) -> dict[str, Any]:
    """Train (or distil) one model as ``config`` says; return the run summary (also summary.json).

    Raises:
        ConfigError, DataError, CheckpointError, UnknownNameError: user-fixable input problems.
    """
    device = resolve_device(config.device)
    info = distributed.init(device.type)
    owns_group = info.enabled
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    try:
        return _Run(config, info, device).run()
    finally:
        if owns_group:
            distributed.cleanup()


class _Run:
    """State of one run; ``run()`` is the whole procedure, the other methods are its steps."""

    def __init__(self, cfg: TrainConfig, info: distributed.DistInfo, device: torch.device) -> None:
        self.cfg, self.info, self.device = cfg, info, device
        self.out = cfg.out
        self.report = Reporter(enabled=info.is_main and not cfg.quiet)
        self.command = cfg.command or " ".join(sys.argv)
        self.teacher: nn.Module | None = None
        self.teacher_ckpt: Checkpoint | None = None
        self.teacher_view: str | None = None

    # -- the procedure -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        t0 = time.perf_counter()
        self._check_names()
        resume_ckpt = self._check_out_dir()
        seed_everything(epoch_seed(cfg.seed, -1))
        self._load_teacher()
        self._open_data()
        self._build_student(resume_ckpt)
        self._build_method()
        self._build_optimizer()
        start_epoch = self._restore(resume_ckpt) if resume_ckpt else 0
        step = self._wrap()
        stop = cfg.stop_after_epoch or cfg.epochs
        for epoch in range(start_epoch, stop):
            self._train_epoch(epoch, step)
        if stop < cfg.epochs:
            summary = self._summary(None, "interrupted", time.perf_counter() - t0)
        else:
            summary = self._summary(self._final_test(), "finished", time.perf_counter() - t0)
        if self.info.is_main:
            atomic_write_json(self.out / "summary.json", summary)
        distributed.barrier(self.info)
        return summary

    # -- set-up steps ----------------------------------------------------------------------------
    def _check_names(self) -> None:
        """Fail on an unknown arch, method or view before any data is read or file written."""
        from cmkd_edge.data.views import parse_view
        from cmkd_edge.distill.losses import METHODS
        from cmkd_edge.distill.pairing import build_pairing
        from cmkd_edge.distill.weights import WEIGHT_RULES
        from cmkd_edge.models import ARCHS

        ARCHS.get(self.cfg.arch)
        METHODS.get(self.cfg.method)
        WEIGHT_RULES.get(self.cfg.weights)
        build_pairing(self.cfg.pairing, self.cfg.pairing_options)
        for view in (self.cfg.view, self.cfg.teacher_view):
            if view is not None:
                parse_view(view)

    def _check_out_dir(self) -> dict[str, Any] | None:
        last = self.out / "last.pt"
        if not self.cfg.resume:
            if last.exists():
                raise ConfigError(
                    f"{self.out} already holds a run (last.pt)",
                    "pass --resume to continue it, or choose another --out",
                )
            return None
        if not last.exists():
            raise CheckpointError(f"nothing to resume: {last} does not exist", "drop --resume to start a run")
        ckpt = load_checkpoint(last)
        if ckpt.train_state is None:
            raise CheckpointError(f"{last} has no train_state to resume from")
        saved = ckpt.meta.config
        for key in RESUME_FIXED:
            old, new = saved.get(key), self.cfg.to_dict()[key]
            if key in saved and old != new:
                raise ConfigError(
                    f"cannot resume: {key} differs from the run in {self.out} ({old!r} there, {new!r} now)"
                )
        return ckpt

    def _load_teacher(self) -> None:
        cfg = self.cfg
        if cfg.teacher is None:
            return
        ckpt = load_checkpoint(cfg.teacher)
        view = cfg.teacher_view or ckpt.meta.view
        if view != ckpt.meta.view:
            compatible_view(ckpt, view)
        self.teacher_ckpt, self.teacher_view = ckpt, view
        self.teacher = model_from_checkpoint(ckpt).to(self.device)

    def _open_data(self) -> None:
        from cmkd_edge.data import open_dataset
        from cmkd_edge.data.splits import write_split_file

        cfg = self.cfg
        # why not the teacher's view with --teacher-data: the student's data need not yield it
        # (optical teacher scenes, radar student chips); the gallery holds the teacher's inputs
        own_teacher_view = self.teacher_view not in (None, cfg.view) and cfg.teacher_data is None
        views = [cfg.view] + ([self.teacher_view] if own_teacher_view else [])
        split_file = self._split_file()
        # why: only rank 0 may write split.csv; the others wait and then read it
        if not self.info.is_main:
            distributed.barrier(self.info)
        opener = partial(open_dataset, cfg.data, views=views, seed=cfg.seed, split_file=split_file)
        split_note = None
        try:
            self.train_set = opener(split="train", augment=cfg.augment)
        except DataError:
            if split_file is None or not self._from_teacher(split_file):
                raise
            # the teacher ran on other data (its split names other samples): the class check
            # below says what is wrong, or the data's own split is used
            split_file = self.out / "split.csv"
            opener = partial(open_dataset, cfg.data, views=views, seed=cfg.seed, split_file=split_file)
            self.train_set = opener(split="train", augment=cfg.augment)
            split_note = "note: the teacher's split.csv does not fit this data; using the data's own split"
        self.val_set = opener(split="val", augment=False)
        self.test_set = opener(split="test", augment=False)
        own_split = self.out / "split.csv"
        if self.info.is_main:
            if not own_split.exists() and split_file is not None and Path(split_file).is_file() \
                    and Path(split_file).resolve() != own_split.resolve():
                self.out.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(split_file, own_split)
            elif not own_split.exists():
                write_split_file(own_split, self.train_set.split_table)
            distributed.barrier(self.info)
        self.task = self.train_set.task
        self.class_names = list(self.train_set.class_names)
        self.view = self.train_set.views[cfg.view]
        select = cfg.select_metric or DEFAULT_SELECT[self.task]
        if select not in SCALARS[self.task] or select == "ece":
            choices = [m for m in SCALARS[self.task] if m != "ece"]
            raise ConfigError(f"cannot select on {select!r} for {self.task} data",
                              f"choose one of: {', '.join(choices)}")
        self.select = select
        if self.teacher_ckpt is not None and cfg.teacher_data is None:
            self._check_teacher_fits()
        if split_note:
            self.report.log(split_note)
        self._label_regime()

    def _split_file(self) -> Path | None:
        """The run's split: an explicit file, else the teacher run's, else ``<out>/split.csv``."""
        if self.cfg.split_file:
            return Path(self.cfg.split_file)
        own = self.out / "split.csv"
        if own.is_file():
            return own
        if self.teacher_ckpt is not None:
            # why: a student must not be tested on samples its teacher trained on
            theirs = Path(self.teacher_ckpt.where).parent / "split.csv"
            if theirs.is_file():
                return theirs
        return own

    def _label_regime(self) -> None:
        """Decide which training samples carry a label; record it as ``self.labels_seen``.

        Raises:
            ConfigError: unlabelled samples in a run without a teacher (unless ``ignore_unlabelled``).
            DataError: a class left without a labelled training sample.
            CheckpointError: a resumed run whose labelled.csv is gone.
        """
        from cmkd_edge.data.labelled import (
            LABELLED_FILE,
            missing_classes,
            per_class_counts,
            read_labelled_ids,
            stratified_fraction,
            write_labelled_ids,
        )
        from cmkd_edge.distill.losses import METHODS

        cfg, ds = self.cfg, self.train_set
        from_data = int((~ds.labelled).sum())
        ids_file, source = None, ("data" if from_data else "all")
        own = self.out / LABELLED_FILE
        if cfg.labelled_fraction is not None or cfg.labelled_ids is not None:
            if cfg.labelled_ids is not None:
                given = Path(cfg.labelled_ids)
                given = given / LABELLED_FILE if given.is_dir() else given
                wanted = set(read_labelled_ids(given))
            elif cfg.resume:
                if not own.is_file():
                    raise CheckpointError(f"cannot resume: {own} (the run's labelled ids) is missing")
                wanted = set(read_labelled_ids(own))
            else:
                keep = stratified_fraction(ds.labels, cfg.labelled_fraction, cfg.label_seed)
                wanted = {i for i, k in zip(ds.ids, keep, strict=True) if k}
            unknown = wanted - set(ds.ids)
            if unknown:
                raise DataError(f"{len(unknown)} labelled id(s) are not training samples of this data, "
                                f"e.g. {sorted(unknown)[0]!r}", "the ids must come from a run on the same split")
            ds.hide_labels(np.asarray([i in wanted for i in ds.ids]))
            if self.info.is_main and not (cfg.resume and own.is_file()):
                write_labelled_ids(own, [i for i, k in zip(ds.ids, ds.labelled, strict=True) if k])
            ids_file, source = LABELLED_FILE, ("fraction" if cfg.labelled_fraction is not None else "ids")
        n_lab, n_unl = int(ds.labelled.sum()), int((~ds.labelled).sum())
        counts = per_class_counts(ds.labels, ds.labelled, len(self.class_names))
        if n_unl and missing_classes(counts, self.class_names):
            raise DataError(f"class(es) {', '.join(missing_classes(counts, self.class_names))} have no "
                            "labelled training sample", "label at least one sample of every class")
        teaches = self.teacher is not None and METHODS.get(cfg.method).needs_teacher
        if from_data and not teaches and not cfg.ignore_unlabelled:
            raise ConfigError(f"{from_data} training samples of {cfg.data} have no label (e.g. "
                              f"{ds.ids[int(np.flatnonzero(~ds.labelled)[0])]!r}), and a run without a "
                              "teacher cannot learn from them",
                              "distil from a teacher to use them, or pass --ignore-unlabelled to train "
                              "on the labelled samples only")
        self.labels_seen = LabelsSeen(
            source=source, n_train=len(ds), n_labelled=n_lab, n_unlabelled=n_unl,
            used_unlabelled=bool(n_unl and teaches), per_class=counts,
            fraction=cfg.labelled_fraction if source == "fraction" else None,
            label_seed=cfg.label_seed if cfg.labelled_fraction is not None else None,
            ids_file=ids_file, ids_sha256=sha256_file(own) if ids_file and own.is_file() else None,
        )
        if n_unl:
            self.report.log(f"labels: {self.labels_seen.summary()}")

    def _from_teacher(self, split_file: Path) -> bool:
        return self.teacher_ckpt is not None and self.cfg.split_file is None and \
            Path(split_file).parent == Path(self.teacher_ckpt.where).parent

    def _check_teacher_fits(self) -> None:
        ckpt = self.teacher_ckpt
        assert ckpt is not None and self.teacher is not None
        require_class_names(list(ckpt.meta.class_names), self.class_names, CheckpointError,
                            "teacher classes ({got}) do not match the data's ({want})",
                            "distil on the data the teacher was trained on", tasks=(ckpt.meta.task, self.task))
        tview = self.train_set.views[self.teacher_view]
        want = list(ckpt.meta.view_info.band_names or tview.band_names)
        if list(tview.band_names) != want:
            raise CheckpointError(
                f"teacher view {self.teacher_view!r} of this data has bands {','.join(tview.band_names)}; "
                f"the teacher was trained on {','.join(want)}"
            )

    def _build_student(self, resume_ckpt: Checkpoint | None) -> None:
        from cmkd_edge.data.stats import band_stats
        from cmkd_edge.models import build_model

        cfg = self.cfg
        if resume_ckpt is not None:
            # the state dict restores the normalisation buffers; keep the recorded statistics
            mean, std = list(resume_ckpt.meta.preprocess.mean), list(resume_ckpt.meta.preprocess.std)
        else:
            m, s = band_stats(self.train_set, cfg.view)
            mean, std = [float(x) for x in m], [float(x) for x in s]
        seed_everything(epoch_seed(cfg.seed, -1))
        self.student = build_model(
            cfg.arch, len(self.view.band_names), len(self.class_names), mean=mean, std=std,
            clip=self.view.clip, **cfg.arch_options,
        ).to(self.device)
        self.preprocess = self.view.deploy_input(self.train_set.source_band_names).with_stats(mean, std)

    def _build_method(self) -> None:
        cfg = self.cfg
        self.method = build_method(cfg.method, cfg.merged_method_options(), task=self.task)
        if self.method.needs_teacher and self.teacher is None:
            raise ConfigError(f"method {cfg.method!r} needs a teacher", "pass --teacher CHECKPOINT")
        self.ctx = DistillContext(
            teacher=self.teacher, student=self.student, train_set=self.train_set, device=self.device,
            teacher_view=self.teacher_view, student_view=cfg.view, run_dir=self.out,
            make_loader=partial(make_loader, batch_size=cfg.batch_size, seed=cfg.seed, workers=cfg.workers),
            task=self.task, num_classes=len(self.class_names), seed=cfg.seed, log=self.report.log,
            val_set=self.val_set,
        )
        self.method.setup(self.ctx)
        self.teacher = self.ctx.teacher  # a method may replace it (MFH)
        if self.teacher is not None:
            self.teacher.to(self.device).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.method.to(self.device)
        self.run_teacher = self.teacher is not None and self.method.needs_teacher
        self._build_pairing()

    def _build_pairing(self) -> None:
        """The pairing rule and, for an unpaired rule, the teacher gallery it pairs into."""
        from cmkd_edge.distill.pairing import build_pairing
        from cmkd_edge.distill.pairing.rules import open_gallery, own_gallery

        cfg = self.cfg
        self.pairing = build_pairing(cfg.pairing, cfg.pairing_options)
        gallery = None
        if self.run_teacher and self.pairing.uses_gallery:
            if cfg.teacher_data is not None:
                gallery = open_gallery(cfg.teacher_data, cfg.teacher_split_file, self.teacher_view, cfg.view,
                                       cfg.seed, self.class_names)
            else:
                gallery = own_gallery(self.train_set, self.teacher_view, cfg.view)
            self.report.log(f"pairing {cfg.pairing}: {len(gallery)} teacher samples from {gallery.where}")
        if self.run_teacher:
            self.pairing.setup(self.ctx, gallery)

    def _build_optimizer(self) -> None:
        cfg = self.cfg
        params = [p for m in (self.student, self.method) for p in m.parameters() if p.requires_grad]
        # why: decaying norm scales and biases hurts small nets; the usual split (timm, torchvision)
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        if cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        sampler = None
        seen = self.labels_seen
        if seen.n_unlabelled:
            lab = np.flatnonzero(self.train_set.labelled)
            unl = np.flatnonzero(~self.train_set.labelled) if seen.used_unlabelled else []
            sampler = LabelledBatchSampler(lab, unl, cfg.batch_size, cfg.seed, share=cfg.labelled_share,
                                           steps=max(1, seen.n_train // cfg.batch_size),
                                           rank=self.info.rank, world=self.info.world_size)
        self.loader = make_loader(self.train_set, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                  workers=cfg.workers, dist_info=self.info, drop_last=True,
                                  device=self.device, batch_sampler=sampler)
        steps = len(self.loader)
        self.scheduler = build_scheduler(self.optimizer, cfg.epochs * steps, cfg.warmup_epochs * steps,
                                         cfg.min_lr_ratio)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.history: list[dict[str, Any]] = []
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        from cmkd_edge.distill.weights import WEIGHT_RULES

        self.rule = WEIGHT_RULES.get(cfg.weights)
        self.steps_per_epoch = steps
        self.averaged = self.rule.averager(self.student, steps)
        self.val_best: float | None = None

    def _restore(self, ckpt: Checkpoint) -> int:
        ts = ckpt.train_state
        assert ts is not None  # _resume_checkpoint refuses a checkpoint without one
        self.student.load_state_dict(ckpt.state_dict)
        self.method.load_state_dict(ts["method"])
        if ts.get("pairing"):
            self.pairing.load_state(ts["pairing"])
        self.optimizer.load_state_dict(ts["optimizer"])
        self.scheduler.load_state_dict(ts["scheduler"])
        self.scaler.load_state_dict(ts["scaler"])
        self.history = list(ts["history"])
        self.best_score, self.best_epoch = ts["best_score"], ts["best_epoch"]
        self.val_best = ts.get("val_best")
        if self.averaged is not None and ts.get("averaged") is not None:
            self.averaged.load_state_dict(ts["averaged"])
        set_rng_state(ts["rng"])
        self.report.log(f"resumed from {self.out / 'last.pt'} after epoch {ckpt.meta.epoch}")
        return int(ckpt.meta.epoch or 0)

    def _wrap(self) -> nn.Module:
        step = StudentStep(self.student, self.method)
        if not self.info.enabled:
            return step
        unused = any(p.requires_grad for p in self.method.parameters())
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(step, device_ids=ids, find_unused_parameters=unused)

    # -- the epoch -------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.use_amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _train_epoch(self, epoch: int, step: nn.Module) -> None:
        cfg = self.cfg
        t0 = time.perf_counter()
        seed = epoch_seed(cfg.seed, epoch)
        seed_everything(seed)
        self.loader.generator.manual_seed(seed)
        for sampler in (self.loader.sampler, self.loader.batch_sampler):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
        _dataset_epoch(self.train_set, epoch)
        self.method.on_epoch_start(epoch, self.ctx)
        if self.run_teacher:
            self.pairing.on_epoch_start(epoch, self.ctx)
        step.train()
        if self.teacher is not None:
            self.teacher.eval()  # why: a method may hold the teacher as a submodule; keep it frozen
        sums: dict[str, float] = {"n": 0.0, "loss": 0.0}
        lr = self.optimizer.param_groups[0]["lr"]
        with self.report.bar(f"epoch {epoch + 1}/{cfg.epochs}", len(self.loader)) as advance:
            for raw in self.loader:
                batch = to_batch(raw, self.device)
                t_out = t_in = None
                with self._autocast():
                    if self.run_teacher:
                        t_in = self.pairing.teacher_input(batch, self.ctx, self.method)
                    s_in, t_in = self.method.prepare_inputs(batch.views[cfg.view], t_in, batch.targets)
                    if t_in is not None:
                        with torch.no_grad():
                            t_out = ModelOutput(*self.teacher.forward_all(t_in))
                    out = step(s_in, t_out, batch.targets)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(out.total).backward()
                if cfg.grad_clip is not None:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"]
                                             + self.optimizer.param_groups[1]["params"], cfg.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                if self.rule.average == "ema":
                    self.averaged.update_parameters(self.student)
                n = float(batch.targets.shape[0])
                sums["n"] += n
                sums["loss"] += float(out.total.detach()) * n
                for k, v in out.parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * n
                advance(loss=float(out.total.detach()))
        sums = distributed.all_reduce_sum(sums, self.info, self.device)
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({f"train_{k}": v / max(sums["n"], 1.0) for k, v in sums.items() if k != "n"})
        if self.rule.averages_epoch(epoch, cfg.epochs):
            self.averaged.update_parameters(self.student)
        if self.info.is_main:
            val = scalars(evaluate_model(self.student, self.val_set, cfg.view, self.device,
                                         cfg.eval_batch_size, cfg.workers))
            row.update({f"val_{k}": v for k, v in val.items()})
            deployed, deployed_val = self.student, val
            if self.averaged is not None and self.averaged.n_averaged.item() > 0:
                deployed = self.averaged.module
                deployed_val = scalars(evaluate_model(deployed, self.val_set, cfg.view, self.device,
                                                      cfg.eval_batch_size, cfg.workers))
                row.update({f"val_{self.rule.name}_{k}": v for k, v in deployed_val.items()})
            row.update(lr=lr, time_s=time.perf_counter() - t0)
            self.history.append(row)
            val_improved = self.val_best is None or val[self.select] > self.val_best
            if val_improved:
                self.val_best = val[self.select]
            # why: a rule that does not pick on validation deploys its weights every epoch; the
            # last write is what the run deploys
            improved = val_improved if self.rule.on_val else True
            if improved:
                self.best_score, self.best_epoch = deployed_val[self.select], epoch + 1
            self._save(epoch + 1, val, improved, deployed, deployed_val, val_improved)
            write_metrics_csv(self.out / "metrics.csv", self.history)
            self.report.epoch_line(row, self.select, improved)
        distributed.barrier(self.info)

    # -- files -------------------------------------------------------------------------------------
    def _checkpoint(self, epoch: int, metrics: dict[str, Any], model: nn.Module | None = None) -> Checkpoint:
        cfg, view = self.cfg, self.view
        teacher = None
        if self.teacher_ckpt is not None:
            tpath = self.teacher_ckpt.where
            teacher = TeacherRef(path=str(Path(tpath).resolve()), sha256=sha256_file(tpath),
                                 arch=self.teacher_ckpt.meta.model.arch, view=self.teacher_view)
        meta = CheckpointMeta(
            model=ModelConfig.from_dict(dict(self.student.config)),
            role=cfg.role,
            task=self.task,
            class_names=tuple(self.class_names),
            view=cfg.view,
            views=(cfg.view, *([self.teacher_view] if self.teacher_view else [])),
            view_info=ViewInfo.from_dict(view.info()),
            # why: the deployed input is the raw source at the training patch size; export must
            # not guess it from whatever parity data happens to be readable
            input_hw=tuple(int(d) for d in self.train_set.catalog.sources[view.source].shape[-2:]),
            preprocess=self.preprocess,
            method=cfg.method,
            method_options=dataclasses.asdict(self.method.cfg),
            labels=self.labels_seen,
            pairing={**self.pairing.report(), "options": dict(cfg.pairing_options),
                     "teacher_data": cfg.teacher_data} if self.run_teacher else None,
            teacher=teacher,
            seed=cfg.seed,
            command=self.command,
            epoch=epoch,
            metrics=metrics,
            data=self.train_set.describe(),
            config=cfg.to_dict(),
        )
        model = self.student if model is None else model
        return Checkpoint(meta, {k: v.detach().cpu() for k, v in model.state_dict().items()})

    def _save(self, epoch: int, val: dict[str, float], improved: bool, deployed: nn.Module,
              deployed_val: dict[str, float], val_improved: bool) -> None:
        weights = self.rule.describe(self.steps_per_epoch)
        ckpt = self._checkpoint(epoch, {"val": val, "select": self.select, "weights": weights})
        if improved:
            best = ckpt if deployed is self.student else self._checkpoint(
                epoch, {"val": deployed_val, "select": self.select, "weights": weights}, deployed)
            save_checkpoint(self.out / "best.pt", best)
        if val_improved and not self.rule.on_val:
            save_checkpoint(self.out / "val-best.pt", ckpt)
        ckpt = dataclasses.replace(ckpt, train_state={
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "method": self.method.state_dict(),
            "pairing": self.pairing.state() if self.run_teacher else {},
            "rng": rng_state(),
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "val_best": self.val_best,
            "averaged": None if self.averaged is None else self.averaged.state_dict(),
            "history": self.history,
        })
        save_checkpoint(self.out / "last.pt", ckpt)

    def _final_test(self) -> dict[str, Any] | None:
        """Score best.pt on the test split once, record it in best.pt (rank 0 only)."""
        if not self.info.is_main:
            return None
        best_path = self.out / "best.pt"
        best = load_checkpoint(best_path)
        model = model_from_checkpoint(best).to(self.device)
        report = evaluate_model(model, self.test_set, self.cfg.view, self.device,
                                self.cfg.eval_batch_size, self.cfg.workers)
        best = dataclasses.replace(best, meta=dataclasses.replace(
            best.meta, metrics={**best.meta.metrics, "test": scalars(report)}))
        save_checkpoint(best_path, best)
        self.report.log(f"test ({report['n']} samples, best.pt from epoch {self.best_epoch}): "
                        + ", ".join(f"{k} {v:.4f}" for k, v in scalars(report).items()))
        return report

    def _summary(self, test: dict[str, Any] | None, status: str, seconds: float) -> dict[str, Any]:
        desc = self.train_set.describe()
        last = self.history[-1] if self.history else {}
        return {
            "status": status,
            "role": self.cfg.role,
            "arch": self.cfg.arch,
            "view": self.cfg.view,
            "teacher_view": self.teacher_view,
            "method": self.cfg.method,
            "task": self.task,
            "class_names": self.class_names,
            "synthetic": bool(desc.get("synthetic", False)) or bool(self.view.synthetic),
            "data": desc,
            "labels": self.labels_seen.to_dict(),
            "pairing": self.pairing.report() if self.run_teacher else None,
            "epochs_run": int(last.get("epoch", 0)),
            "select_metric": self.select,
            "weights": self.rule.describe(self.steps_per_epoch),
            "best_epoch": self.best_epoch,
            "best_val": self.best_score,
            "last": last,
            "test": test,
            "best_checkpoint": str(self.out / "best.pt"),
            "seconds": seconds,
            "world_size": self.info.world_size,
            "device": str(self.device),
            "command": self.command,
            "config": self.cfg.to_dict(),
        }
