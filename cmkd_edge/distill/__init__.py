"""Distillation: the trainer, its config, evaluation, DDP helpers, and the methods (``losses/``).

``from cmkd_edge.distill import train, TrainConfig`` imports torch only when used (lazy attributes),
so importing the package stays cheap.

Modules: ``config`` (TrainConfig), ``trainer`` (train), ``evaluation`` (predict, evaluate_checkpoint),
``loaders``, ``runstate`` (seeding, RNG snapshots, schedule, metrics.csv),
``distributed`` (torchrun), ``progress`` (bars and epoch lines), ``losses`` (METHODS registry).
"""

from __future__ import annotations

from cmkd_edge._lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "cmkd_edge.distill.config",
    "train": "cmkd_edge.distill.trainer",
    "evaluate_checkpoint": "cmkd_edge.distill.evaluation",
    "evaluate_model": "cmkd_edge.distill.evaluation",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
