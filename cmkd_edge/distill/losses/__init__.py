"""Distillation methods by name (``--method``): each a :class:`DistillMethod` with one signature.

Entries are lazy import paths so ``cmkd-edge list methods`` imports no torch and a method's module is
loaded only when chosen; the table is the one place that says which methods exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cmkd_edge._registry import Registry

# why the hint: a method module fails to import only without torch, which the [train] extra brings
METHODS: Registry = Registry("method", install_hint="methods need torch: pip install 'cmkd-edge[train]'")

_P = "cmkd_edge.distill.losses."
for _name, _path, _help in (
    ("none", _P + "plain:NoDistill", "no teacher: cross-entropy only (teacher training, no-KD baseline)"),
    ("kd", _P + "kd:LogitKD", "logit KD (Hinton 2015), reductions batchmean|mean, T, T^2"),
    ("fitnet", _P + "fitnet:FitNet", "FitNet hint: MSE of a 1x1-conv projected student map to the teacher's + KD"),
    ("ds", _P + "ds:DimensionalStructure", "dimensional-structure CMKD (arXiv 2306.15977): independence + uniformity"),
    ("sembridge", _P + "sembridge:SemBridge", "asymmetric CMKD (arXiv 2511.08901): matching + weighted CORAL"),
    ("mfh", _P + "mfh:ModalityFocusing", "modality-focusing KD (arXiv 2206.06487): KD from a modality-general teacher"),
):
    METHODS.add(_name, _path, _help)


def build_method(name: str, options: Mapping[str, Any] | None = None, task: str = "multiclass") -> Any:
    """Instantiate method ``name`` with options parsed by its Config dataclass."""
    from cmkd_edge.distill.losses.base import parse_options

    cls = METHODS.get(name)
    cfg = parse_options(cls.Config, dict(options or {}))
    return cls(cfg, task=task)
