"""Which weights a run deploys (``best.pt``): the rule is fixed before training, by name.

``--weights`` chooses one of :data:`WEIGHT_RULES`:

* ``best-val`` - the epoch with the best validation score (the classic rule). It needs a validation
  split that resolves the differences between epochs: on MSTAR the 17-degree validation chips
  saturate at 99.3-99.6 % (n = 275, one chip = 0.36 points) while the 15-degree test chips move by
  a point between epochs, so the rule picks on noise (docs/benchmarks.md, "Radar student").
* ``last`` - the weights after the last epoch; with a cosine schedule to zero they have settled.
* ``ema`` - an exponential moving average of the weights, updated every step, with a time constant
  of ``EMA_SHARE`` of the run's steps (decay ``1 - 1 / (EMA_SHARE * total steps)``: two epochs of a
  40-epoch run), taken at the end. Why: it averages the last iterates, which land on different
  sides of a flat minimum, without looking at any held-out split (Polyak averaging; timm's
  ``ModelEmaV2``); why a share of the run: a fixed horizon would still be averaging the early, poor
  iterates at the end of a short run.
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

#: ``ema``: the average's time constant, as a share of the run's optimizer steps.
EMA_SHARE = 0.05
#: ``swa``: the share of the epochs (the last ones) whose end-of-epoch weights are averaged.
SWA_SHARE = 0.25


@dataclass(frozen=True)
class WeightRule:
    """A rule for the deployed weights.

    Attributes:
        name: the registry name.
        on_val: the rule picks an epoch by validation score (best.pt only on an improvement).
        average: ``"ema"`` (every step), ``"swa"`` (end of epoch, in the tail) or None (raw weights).
    """

    name: str
    on_val: bool
    average: str | None = None

    def averager(self, model: nn.Module, total_steps: int) -> AveragedModel | None:
        """The running average this rule keeps of ``model`` (None: the raw weights)."""
        if self.average == "ema":
            decay = ema_decay(total_steps)
            return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        if self.average == "swa":
            return AveragedModel(model, use_buffers=True)
        return None

    def averages_epoch(self, epoch: int, epochs: int) -> bool:
        """Whether the end-of-epoch weights of ``epoch`` (0-based) join an ``swa`` average."""
        return self.average == "swa" and epoch >= epochs - max(1, math.ceil(SWA_SHARE * epochs))

    def describe(self, total_steps: int | None = None) -> dict[str, Any]:
        """The rule as recorded in checkpoints and summaries."""
        out: dict[str, Any] = {"rule": self.name}
        if self.average == "ema":
            out["ema_share"] = EMA_SHARE
            if total_steps:
                out["ema_decay"] = ema_decay(total_steps)
        if self.average == "swa":
            out["swa_share"] = SWA_SHARE
        return out


def ema_decay(total_steps: int) -> float:
    """The per-step decay whose time constant is ``EMA_SHARE`` of ``total_steps``."""
    return 1.0 - 1.0 / max(1.0, EMA_SHARE * total_steps)


WEIGHT_RULES: Registry[WeightRule] = Registry("weights rule")
WEIGHT_RULES.add("best-val", WeightRule("best-val", on_val=True),
                 "the epoch with the best validation score")
WEIGHT_RULES.add("last", WeightRule("last", on_val=False), "the weights after the last epoch")
WEIGHT_RULES.add("ema", WeightRule("ema", on_val=False, average="ema"),
                 f"exponential moving average of the weights (time constant {EMA_SHARE:.0%} of the run)")
WEIGHT_RULES.add("swa", WeightRule("swa", on_val=False, average="swa"),
                 f"average of the end-of-epoch weights over the last {SWA_SHARE:.0%} of the epochs")
