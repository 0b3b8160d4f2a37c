"""Which weights a run deploys (``best.pt``): the rule is fixed before training, by name.

``--weights`` chooses one of :data:`WEIGHT_RULES`:

* ``best-val`` - the epoch with the best validation score (the classic rule). It needs a validation
  split that resolves the differences between epochs: on MSTAR the 17-degree validation chips
  saturate at 99.3-99.6 % (n = 275, one chip = 0.36 points) while the 15-degree test chips move by
  a point between epochs, so the rule picks on noise (docs/benchmarks.md, "Radar student").
* ``last`` - the weights after the last epoch; with a cosine schedule to zero they have settled.
* ``ema`` - an exponential moving average of the weights, updated every step, with a time constant
  of ``EMA_EPOCHS`` epochs of steps (decay ``1 - 1 / (EMA_EPOCHS * steps per epoch)``), taken at the
  end. Why: it averages the last iterates, which land on different sides of a flat minimum, without
  looking at any held-out split (Polyak averaging; timm's ``ModelEmaV2``). The constant was fixed
  before the radar study and is kept: on a 12-epoch run it still carries some early iterates (93.2 %
  test against 94.2 % for the last epoch on MSTAR), which is why the radar recipe trains longer.
* ``swa`` - the equal-weight average of the end-of-epoch weights over the last ``SWA_SHARE`` of the
  epochs (Izmailov et al. 2018, on the cosine schedule's tail).

Averaged rules average the BatchNorm running statistics with the weights (``use_buffers=True``, as
timm's EMA does) rather than re-estimating them with an extra pass. Whatever the rule, the trainer
also writes ``val-best.pt`` (the raw weights of the best validation epoch) when it differs, so a
study can compare rules on one run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cmkd_edge._registry import Registry

#: ``ema``: the average's time constant, in epochs of optimizer steps (fixed before the radar study).
EMA_EPOCHS = 2.0
#: ``swa``: the share of the epochs (the last ones) whose end-of-epoch weights are averaged.
SWA_SHARE = 0.25


@dataclass(frozen=True)
class WeightRule:
    """A rule for the deployed weights.

    Attributes:
        name: the registry name.
        on_val: the rule picks an epoch by validation score (best.pt only on an improvement).
        average: ``"ema"`` (every step), ``"swa"`` (end of epoch, in the tail) or None (raw weights).
        label: what best.pt holds, in words (the run summary's line).
    """

    name: str
    on_val: bool
    average: str | None = None
    label: str = ""

    def averager(self, model: nn.Module, steps_per_epoch: int) -> AveragedModel | None:
        """The running average this rule keeps of ``model`` (None: the raw weights)."""
        if self.average == "ema":
            decay = ema_decay(steps_per_epoch)
            return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        if self.average == "swa":
            return AveragedModel(model, use_buffers=True)
        return None

    def averages_epoch(self, epoch: int, epochs: int) -> bool:
        """Whether the end-of-epoch weights of ``epoch`` (0-based) join an ``swa`` average."""
        return self.average == "swa" and epoch >= epochs - max(1, math.ceil(SWA_SHARE * epochs))

    def describe(self, steps_per_epoch: int | None = None) -> dict[str, Any]:
        """The rule as recorded in checkpoints and summaries."""
        out: dict[str, Any] = {"rule": self.name}
        if self.average == "ema":
            out["ema_epochs"] = EMA_EPOCHS
            if steps_per_epoch:
                out["ema_decay"] = ema_decay(steps_per_epoch)
        if self.average == "swa":
            out["swa_share"] = SWA_SHARE
        return out


def ema_decay(steps_per_epoch: int) -> float:
    """The per-step decay whose time constant is ``EMA_EPOCHS`` epochs of steps."""
    return 1.0 - 1.0 / max(1.0, EMA_EPOCHS * steps_per_epoch)


WEIGHT_RULES: Registry[WeightRule] = Registry("weights rule")
WEIGHT_RULES.add("best-val", WeightRule("best-val", on_val=True, label="best validation epoch"),
                 "the epoch with the best validation score")
WEIGHT_RULES.add("last", WeightRule("last", on_val=False, label="last epoch"), "the weights after the last epoch")
WEIGHT_RULES.add("ema", WeightRule("ema", on_val=False, average="ema", label="EMA of the weights"),
                 f"exponential moving average of the weights ({EMA_EPOCHS:g}-epoch time constant)")
WEIGHT_RULES.add("swa", WeightRule("swa", on_val=False, average="swa", label="SWA average"),
                 f"average of the end-of-epoch weights over the last {SWA_SHARE:.0%} of the epochs")
