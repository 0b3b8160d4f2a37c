"""Pairing rules by name (``--pairing``): which teacher-modality sample teaches each student sample.

Cross-modal distillation transfers supervision through pairs. On co-registered data the pair is
``given`` (the teacher sees its view of the student's own sample, with the same augmentation draw).
Without pairs - SemBridge's asymmetric setting, or a user whose optical and radar archives are
different scenes - each student sample is paired with a sample of a *teacher gallery* (``--teacher-data``,
or the training split's own teacher view) by a rule: ``random`` (a lower bound), ``class`` (a random
same-class sample, an oracle for the unlabelled ones whose class the data hides), ``sembridge``
(the paper's matcher and KL re-matching, arXiv 2511.08901). Entries are lazy import paths, so
``cmkd-edge list pairings`` imports no torch.
"""

from __future__ import annotations

from cmkd_edge._registry import Registry

PAIRINGS: Registry = Registry("pairing", install_hint="pairings need torch: pip install 'cmkd-edge[train]'")

_P = "cmkd_edge.distill.pairing.rules:"
for _name, _path, _help in (
    ("given", _P + "GivenPairing", "the teacher's view of the student's own sample (paired data)"),
    ("random", _P + "RandomPairing", "a random gallery sample, redrawn each epoch (lower bound)"),
    ("class", _P + "ClassPairing", "a random same-class gallery sample, redrawn each epoch (oracle)"),
    ("sembridge", _P + "SemBridgePairing", "SemBridge matcher, then KL re-matching (arXiv 2511.08901)"),
):
    PAIRINGS.add(_name, _path, _help)


def build_pairing(name: str, options: dict | None = None) -> object:
    """Instantiate pairing ``name`` with options parsed by its Config dataclass."""
    from cmkd_edge.distill.losses.base import parse_options

    cls = PAIRINGS.get(name)
    return cls(parse_options(cls.Config, dict(options or {}), what=f"pairing {name!r}"))
