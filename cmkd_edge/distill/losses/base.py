"""The one interface every distillation method implements (after torchdistill's loss registry).

The trainer calls ``setup`` once, ``on_epoch_start`` each epoch, ``teacher_input`` (through the
run's pairing rule), ``prepare_inputs`` and the module itself each step; it never branches on which
method it runs. Targets of unlabelled samples are -1 (a row of -1 for multi-label):
:meth:`DistillMethod.task_loss` averages the label loss over the labelled rows only, so those samples
learn only from the teacher. Options are a frozen dataclass per method (``Config``), filled from
``--method-opt key=value`` strings by :func:`parse_options`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from cmkd_edge.errors import ConfigError


class ModelOutput(NamedTuple):
    """Logits and named features of one forward pass (features: "map", "last", "embed")."""

    logits: Tensor
    feats: dict[str, Tensor]


class LossOutput(NamedTuple):
    """Total loss to backpropagate and its named parts (logged per epoch)."""

    total: Tensor
    parts: dict[str, Tensor]


class Batch(NamedTuple):
    """One training batch: views by name, targets, and the samples' dataset indices."""

    views: dict[str, Tensor]
    targets: Tensor
    index: Tensor


@dataclass
class DistillContext:
    """What a method may use or change in ``setup``: models, data, device, where to write."""

    teacher: nn.Module | None
    student: nn.Module
    train_set: Any
    device: torch.device
    teacher_view: str | None
    student_view: str
    run_dir: Path
    make_loader: Callable[..., Any]
    task: str = "multiclass"
    num_classes: int = 0
    seed: int = 0
    log: Callable[[str], None] = print
    val_set: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BaseConfig:
    """Options every method shares: loss weights and the logit-KD temperature."""

    ce_weight: float = 1.0
    kd_weight: float = 1.0
    temperature: float = 4.0


class DistillMethod(nn.Module):
    """Base of all methods: CE on the student's logits, plus whatever a subclass adds."""

    name: ClassVar[str] = "base"
    needs_teacher: ClassVar[bool] = True
    Config: ClassVar[type] = BaseConfig

    def __init__(self, cfg: Any | None = None, task: str = "multiclass") -> None:
        super().__init__()
        self.cfg = cfg if cfg is not None else self.Config()
        self.task = task

    # hooks ---------------------------------------------------------------------------------
    def setup(self, ctx: DistillContext) -> None:
        """Prepare before training (build submodules, train a matcher, wrap the teacher)."""

    def on_epoch_start(self, epoch: int, ctx: DistillContext) -> None:
        """Called at the start of every epoch (0-based), also on a resumed run."""

    def prepare_inputs(self, student_x: Tensor, teacher_x: Tensor | None, targets: Tensor
                       ) -> tuple[Tensor, Tensor | None]:
        """Transform the two models' inputs of one step alike (e.g. one mixup draw for both)."""
        return student_x, teacher_x

    def teacher_input(self, batch: Batch, ctx: DistillContext) -> Tensor:
        """The teacher's input for this batch; by default the paired view of the same samples."""
        return batch.views[ctx.teacher_view]

    # loss ----------------------------------------------------------------------------------
    def task_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy (multiclass) or binary cross-entropy on multi-hot targets (multilabel), averaged
        over the labelled rows; 0 (still in the graph) for a batch without a labelled row."""
        keep = labelled_rows(targets)
        if not bool(keep.all()):
            if not bool(keep.any()):
                return logits.sum() * 0.0
            logits, targets = logits[keep], targets[keep]
        if self.task == "multilabel":
            return nn.functional.binary_cross_entropy_with_logits(logits, targets.float())
        return nn.functional.cross_entropy(logits, targets)

    def forward(self, s: ModelOutput, t: ModelOutput | None, targets: Tensor) -> LossOutput:
        ce = self.task_loss(s.logits, targets)
        return LossOutput(self.cfg.ce_weight * ce, {"ce": ce.detach()})


def labelled_rows(targets: Tensor) -> Tensor:
    """``(N,)`` bool: rows of a target batch that carry a label (-1 marks an unlabelled sample)."""
    return targets >= 0 if targets.dim() == 1 else ~(targets < 0).all(dim=1)


def _coerce(value: str, typ: Any, key: str) -> Any:
    """Convert a ``--method-opt`` string to the dataclass field's type."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value.lower() in ("none", "null", ""):
            return None
        typ = args[0]
        origin = typing.get_origin(typ)
    try:
        if typ is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if origin in (tuple, list):
            (inner, *_) = typing.get_args(typ) or (str,)
            items = [_coerce(v, inner, key) for v in value.split(",") if v != ""]
            return tuple(items) if origin is tuple else items
        if typ in (int, float, str):
            return typ(value)
        if origin is typing.Literal:
            if value not in typing.get_args(typ):
                raise ValueError(value)
            return value
    except ValueError:
        raise ConfigError(
            f"option {key}={value!r} is not a valid {getattr(typ, '__name__', typ)}"
        ) from None
    return value


def parse_options(config_cls: type, options: Mapping[str, Any], what: str = "this method") -> Any:
    """Build ``config_cls`` from ``{key: value}``; values may be strings from the command line.

    Raises:
        ConfigError: an unknown key (the message lists the valid ones) or a value of the wrong type.
    """
    hints = typing.get_type_hints(config_cls)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    kwargs = {}
    for key, value in options.items():
        k = key.replace("-", "_")
        if k not in fields:
            raise ConfigError(
                f"unknown option {key!r} for {what}",
                f"valid options: {', '.join(sorted(fields))}" if fields else f"{what} takes no options",
            )
        kwargs[k] = _coerce(value, hints[k], key) if isinstance(value, str) else value
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid options for {what}: {exc}") from None
