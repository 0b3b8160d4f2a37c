"""The run configuration: one frozen dataclass for teacher training and for distillation.

Validated in ``__post_init__`` so a bad option fails before any data is read or model is built, with
a one-line :class:`~cmkd_edge.errors.ConfigError` the CLI prints as is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmkd_edge.errors import ConfigError

OPTIMIZERS = ("adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (recorded in its checkpoints and summary).

    Options left None come from the data's recipe (``cmkd_edge.distill.recipes``: view, arch, lr,
    warm-up, epochs, weights; ``recipe`` names it, None = the data's own).

    Args:
        out: run directory (last.pt, best.pt, metrics.csv, summary.json, split.csv).
        data: dataset path, or None / "synthetic" for the deterministic synthetic default.
        view: the trained model's view ("ms", "rgb", "sar", "sar-sim", "bands:...", "chip",
            "edge-radar"); None = the data's own modality (``chip`` for radar chips, else ``ms``).
        input_size: crop chip views to ``input_size`` x ``input_size`` (adds ``crop=N`` to the
            view spec, so the view name records it for evaluate/export/distil); None = no crop.
        arch: model name in ``cmkd_edge.models.ARCHS``; ``arch_options`` go to ``build_model``.
        teacher: teacher checkpoint (file or run directory) for distillation; None trains a model
            from labels only (``method`` must then be one that needs no teacher, e.g. "none").
        teacher_view: the teacher's view; None = the view recorded in the teacher checkpoint.
        method, method_options: distillation method and its options (strings are parsed by the
            method's Config). ``temperature``/``kd_weight``/``ce_weight`` are merged into the
            options when set.
        epochs: total epochs; ``stop_after_epoch`` ends the run early as if interrupted (the
            schedule still spans ``epochs``), which is how resume is tested.
        optimizer: "adamw" or "sgd" (momentum, nesterov); cosine decay per step to ``min_lr_ratio``
            after ``warmup_epochs`` of linear warm-up.
        select_metric: validation metric for best.pt (default: accuracy; mAP for multi-label).
        weights: the rule for the deployed weights in best.pt (``cmkd_edge.distill.weights``:
            best-val, last, ema, swa), fixed before training.
        device: "auto" (CUDA when present), "cpu" or "cuda"; ``amp`` enables autocast + GradScaler
            on CUDA only (CPU always runs float32).
        command: the exact command line, recorded in checkpoints.
        labelled_fraction, label_seed: keep a stratified ``labelled_fraction`` of the train split's
            labels (at least one per class; ``label_seed`` draws them) and hide the rest - the
            few-label experiment; the kept ids go to ``<out>/labelled.csv``. None = every label.
        labelled_ids: a labelled.csv (or run dir) whose ids are the labelled ones (another run's
            draw, so two runs see the same labels); exclusive with ``labelled_fraction``.
        labelled_share: when some training samples are unlabelled and a teacher teaches them, each
            batch holds at least this share of labelled samples (cycled), the rest unlabelled.
        ignore_unlabelled: a run without a teacher trains on the labelled samples only instead of
            refusing data that holds unlabelled ones.
        pairing, pairing_options: the pairing rule (``cmkd_edge.distill.pairing.PAIRINGS``):
            ``given`` (the data's own pairs) or a rule pairing into a teacher gallery.
        teacher_data, teacher_split_file: where the gallery of an unpaired rule comes from (its
            train split); None = the training split's own teacher view.
    """

    out: Path
    data: str | None = None
    view: str | None = None
    input_size: int | None = None
    arch: str | None = None
    arch_options: dict[str, Any] = field(default_factory=dict)
    teacher: str | None = None
    teacher_view: str | None = None
    method: str = "none"
    method_options: dict[str, Any] = field(default_factory=dict)
    temperature: float | None = None
    kd_weight: float | None = None
    ce_weight: float | None = None
    epochs: int | None = None
    stop_after_epoch: int | None = None
    batch_size: int | None = None
    optimizer: str = "adamw"
    lr: float | None = None
    weight_decay: float = 0.05
    momentum: float = 0.9
    warmup_epochs: int | None = None
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    augment: bool = True
    select_metric: str | None = None
    weights: str | None = None
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    amp: bool = True
    resume: bool = False
    split_file: str | None = None
    eval_batch_size: int = 128
    quiet: bool = False
    command: str | None = None
    labelled_fraction: float | None = None
    label_seed: int = 0
    labelled_ids: str | None = None
    labelled_share: float = 0.25
    ignore_unlabelled: bool = False
    pairing: str = "given"
    pairing_options: dict[str, Any] = field(default_factory=dict)
    teacher_data: str | None = None
    teacher_split_file: str | None = None
    recipe: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.data is not None and str(self.data) == "synthetic":
            object.__setattr__(self, "data", None)
        if self.data is not None:
            object.__setattr__(self, "data", str(self.data))
        self._apply_recipe()
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"batch size must be >= 1 (got {self.batch_size})"),
            (self.eval_batch_size >= 1, f"eval batch size must be >= 1 (got {self.eval_batch_size})"),
            (self.lr > 0, f"learning rate must be > 0 (got {self.lr})"),
            (self.weight_decay >= 0, f"weight decay must be >= 0 (got {self.weight_decay})"),
            (0 <= self.warmup_epochs < self.epochs or self.warmup_epochs == 0,
             f"warmup epochs must be in [0, epochs) (got {self.warmup_epochs})"),
            (0 <= self.min_lr_ratio <= 1, f"min lr ratio must be in [0, 1] (got {self.min_lr_ratio})"),
            (self.workers >= 0, f"workers must be >= 0 (got {self.workers})"),
            (self.grad_clip is None or self.grad_clip > 0, "grad clip must be > 0"),
            (self.optimizer in OPTIMIZERS,
             f"unknown optimizer {self.optimizer!r} (choose one of: {', '.join(OPTIMIZERS)})"),
            (self.device in DEVICES,
             f"unknown device {self.device!r} (choose one of: {', '.join(DEVICES)})"),
            (self.stop_after_epoch is None or 1 <= self.stop_after_epoch <= self.epochs,
             f"stop-after-epoch must be in [1, epochs] (got {self.stop_after_epoch})"),
            (self.temperature is None or self.temperature > 0,
             f"temperature must be > 0 (got {self.temperature})"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        from cmkd_edge.data.labelled import check_fraction

        check_fraction(self.labelled_fraction)
        if self.labelled_fraction is not None and self.labelled_ids is not None:
            raise ConfigError("give --labelled-fraction or --labelled-ids, not both")
        if not 0.0 < self.labelled_share <= 1.0:
            raise ConfigError(f"labelled share must be in (0, 1] (got {self.labelled_share})")
        if self.teacher is None and (self.pairing != "given" or self.teacher_data is not None):
            raise ConfigError("--pairing and --teacher-data need a teacher", "pass --teacher CHECKPOINT")
        if self.teacher_data is not None and self.pairing == "given":
            raise ConfigError("pairing 'given' pairs each student sample with its own teacher view; "
                              "--teacher-data holds other samples",
                              "choose --pairing sembridge, random or class")
        if self.teacher_view is not None and self.teacher is None:
            raise ConfigError("a teacher view was given without a teacher checkpoint")
        if self.input_size is not None and self.input_size < 1:
            raise ConfigError(f"input size must be >= 1 (got {self.input_size})")
        from cmkd_edge.data.views import with_input_size

        if self.view is None:
            from cmkd_edge.data.layouts import default_view

            object.__setattr__(self, "view", default_view(self.data))
        object.__setattr__(self, "view", with_input_size(self.view, self.input_size))
        if self.teacher_view is not None:
            object.__setattr__(self, "teacher_view", with_input_size(self.teacher_view, self.input_size))

    def _apply_recipe(self) -> None:
        """Fill what was left out (None) from the data's recipe (``cmkd_edge.distill.recipes``)."""
        from cmkd_edge.distill.recipes import RECIPES, recipe_for

        recipe = RECIPES.get(self.recipe) if self.recipe else recipe_for(self.data)
        object.__setattr__(self, "recipe", recipe.name)
        if self.epochs is None:
            object.__setattr__(self, "epochs", recipe.epochs)
        fill = {"view": recipe.view(self.role, self.input_size), "arch": recipe.arch(self.role), "lr": recipe.lr,
                "weights": recipe.weights, "batch_size": recipe.batch_size,
                # why min: a 1-epoch run of a recipe with warm-up would be refused
                "warmup_epochs": min(recipe.warmup_epochs, max(0, self.epochs - 1))}
        if self.arch is None:
            # the recipe's arch comes with its options; a named --arch is that arch's own defaults
            object.__setattr__(self, "arch_options", {**recipe.arch_options, **self.arch_options})
        for key, value in fill.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)

    @property
    def role(self) -> str:
        """"student" when distilled from a teacher, else "teacher"."""
        return "student" if self.teacher is not None else "teacher"

    def merged_method_options(self) -> dict[str, Any]:
        """``method_options`` plus the common loss options that were set on the command line."""
        opts = dict(self.method_options)
        for key in ("temperature", "kd_weight", "ce_weight"):
            value = getattr(self, key)
            if value is not None:
                opts[key] = value
        return opts

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (JSON and ``weights_only`` checkpoint friendly)."""
        d = dataclasses.asdict(self)
        d["out"] = str(self.out)
        return d
