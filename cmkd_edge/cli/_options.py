"""Options shared by the commands, and the small parsing and printing helpers behind them.

Click and stdlib only (``--help`` imports this module on a runtime-only device).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from cmkd_edge.errors import DataError


class LiveChoice(click.Choice):
    """A ``click.Choice`` whose choices are read from a registry on every use, not frozen at import.

    Why: ``--backend`` offers every registered backend, and a backend registered after the CLI
    module was imported (a plugin, a test) must be accepted, listed in ``--help`` and refused with
    the same list when misspelt.
    """

    def __init__(self, names: Callable[[], Sequence[str]], case_sensitive: bool = True) -> None:
        self._names = names
        super().__init__((), case_sensitive)

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        return tuple(self._names())

    @choices.setter
    def choices(self, _value: Sequence[str]) -> None:  # click's __init__ assigns it; the registry owns it
        pass


def parse_key_values(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """``("a=1", "b=x")`` -> ``{"a": "1", "b": "x"}``; the method's Config converts the types."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected key=value, got {item!r}", ctx=ctx, param=param)
        out[key.strip()] = value.strip()
    return out


def check_data_path(data: str | None) -> str | None:
    """None / "synthetic" select the synthetic default ("synthetic:per_class=20,size=16" sizes it);
    any other value must exist on disk."""
    if data is None or data == "synthetic":
        return None
    if data.startswith("synthetic:"):
        return data
    if not Path(data).exists():
        raise DataError(f"data path not found: {data}", "give an existing folder or file, or omit --data "
                        "for the synthetic default")
    return data


def command_line() -> str:
    """The exact command line (recorded in checkpoints)."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def _stack(*decorators: Callable[[Callable], Callable]) -> Callable[[Callable], Callable]:
    def apply(f: Callable) -> Callable:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


data_option = click.option(
    "--data", default=None, metavar="PATH",
    help="Dataset folder/file (EuroSAT-MS, BigEarthNet, paired layout, radar chips). Default: synthetic data.",
)
out_option = click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
device_option = click.option(
    "--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]),
    help="auto = CUDA (with mixed precision) when present, else CPU.",
)

#: Options every training command takes; their names match TrainConfig fields.
training_options = _stack(
    out_option,
    data_option,
    click.option("--epochs", default=None, type=int,
                 help="Total epochs (default: the data's recipe: 80 for radar chips, else 10)."),
    click.option("--batch-size", default=None, type=int,
                 help="Training batch (default: the data's recipe: 8 for radar chips, else 32)."),
    click.option("--optimizer", default="adamw", show_default=True, type=click.Choice(["adamw", "sgd"])),
    click.option("--lr", default=None, type=float,
                 help="Peak learning rate (default: the data's recipe: 3e-3 for radar chips, else 1e-3)."),
    click.option("--weight-decay", default=0.05, show_default=True, type=float),
    click.option("--warmup-epochs", default=None, type=int,
                 help="Linear warm-up before the cosine decay (default: the data's recipe: 1 for "
                      "radar chips, else 0)."),
    click.option("--augment/--no-augment", default=True, show_default=True,
                 help="Each view's training augmentation: flips/90-degree rotations of overhead "
                      "patches, random crops of radar chips."),
    click.option("--input-size", default=None, type=click.IntRange(1), metavar="N",
                 help="Crop chip views to NxN (training: random crops; deployed: the centre), "
                      "e.g. 88 for 128x128 MSTAR chips."),
    click.option("--arch-opt", "arch_options", multiple=True, callback=parse_key_values, metavar="KEY=VALUE",
                 help="Model option, e.g. width=32 or dropout=0.2 (repeatable)."),
    click.option("--select-metric", default=None,
                 help="Validation metric for best.pt (default accuracy; mAP for multi-label)."),
    click.option("--weights", default=None, metavar="RULE",
                 help="What best.pt deploys, fixed before training: best-val, last, ema, swa (default: "
                      "the data's recipe: ema for radar chips, else best-val; cmkd-edge list weights)."),
    click.option("--recipe", default=None, metavar="NAME",
                 help="Defaults for every option left out (default: the data's own; cmkd-edge list recipes)."),
    click.option("--seed", default=0, show_default=True, type=int),
    click.option("--workers", default=0, show_default=True, type=int, help="DataLoader worker processes."),
    device_option,
    click.option("--split-file", default=None, metavar="PATH",
                 help="Reuse a split.csv (or a run directory's) instead of the data's own split."),
    click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt."),
    click.option("--stop-after-epoch", default=None, type=int, metavar="K",
                 help="End after epoch K as if interrupted (the schedule still spans --epochs)."),
    click.option("--labelled-fraction", default=None, type=float, metavar="F",
                 help="Keep a stratified fraction F of the train split's labels (at least one per "
                      "class) and hide the rest, e.g. 0.05; the kept ids go to OUT/labelled.csv."),
    click.option("--label-seed", default=0, show_default=True, type=int,
                 help="Seed of the --labelled-fraction draw (independent of --seed)."),
    click.option("--labelled-ids", default=None, metavar="PATH",
                 help="Use the labelled ids of another run (its labelled.csv or run directory)."),
    click.option("--labelled-share", default=0.25, show_default=True, type=float,
                 help="With unlabelled samples taught by a teacher: the least share of each batch "
                      "that is labelled."),
    click.option("--ignore-unlabelled", is_flag=True,
                 help="Without a teacher, train on the labelled samples and skip the data's unlabelled ones."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bars or epoch lines."),
    json_option,
)


def coerce_arch_options(options: dict[str, str]) -> dict[str, Any]:
    """Arch options arrive as strings: turn numbers into numbers (``width=32`` -> 32)."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        for conv in (int, float):
            try:
                out[k] = conv(v)
                break
            except ValueError:
                continue
        else:
            out[k] = {"true": True, "false": False}.get(v.lower(), v)
    return out


#: width of a console that is not a terminal: wide enough that no table of ours is cut
PIPE_WIDTH = 400


def table_console() -> Any:
    """A rich Console for tables that read whole anywhere.

    A terminal keeps its width (our tables fold long cells onto more lines instead of cutting them);
    a pipe, a file or CI gets :data:`PIPE_WIDTH` columns, because rich otherwise assumes 80 and cuts
    cells to ``onnx-fp…``, which leaves rows that cannot be told apart in a log.
    """
    from rich.console import Console

    console = Console(soft_wrap=True)
    return console if console.is_terminal else Console(width=PIPE_WIDTH, soft_wrap=True)
