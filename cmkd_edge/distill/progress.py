"""What a run shows while it trains: rich progress bars on a terminal, one line per epoch.

Everything goes to stderr so stdout stays free for ``--json`` output. Bars are drawn only on a TTY
(logs and CI get the epoch lines alone); ``--quiet`` and non-zero DDP ranks print nothing.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any


class Reporter:
    """Progress bars and log lines for one run (no-ops when disabled)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._console = None
        if enabled:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False, soft_wrap=True)

    def log(self, msg: str) -> None:
        """Print one line (stderr)."""
        if self._console is not None:
            self._console.print(msg, markup=False)

    @contextlib.contextmanager
    def bar(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        """Yield ``advance(**fields)``; draws a transient bar only on an interactive terminal."""
        if self._console is None or not sys.stderr.isatty():
            yield lambda **_: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
            console=self._console, transient=True,
        ) as progress:
            task = progress.add_task(description, total=total, loss=float("nan"))

            def advance(**fields: Any) -> None:
                progress.update(task, advance=1, **fields)

            yield advance

    def epoch_line(self, row: dict[str, Any], select: str, improved: bool) -> None:
        """``epoch 3  loss 0.812 (ce 0.70, kd 0.11)  val accuracy 0.750 *  lr 1.0e-03  2.1s``."""
        parts = [k[len("train_"):] for k in row if k.startswith("train_") and k != "train_loss"]
        detail = ", ".join(f"{p} {row['train_' + p]:.3f}" for p in parts)
        vals = "  ".join(f"{k[4:]} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
        mark = " *" if improved else ""
        self.log(
            f"epoch {row['epoch']:>3}  loss {row.get('train_loss', float('nan')):.4f}"
            + (f" ({detail})" if detail else "")
            + f"  val {vals}{mark}  lr {row.get('lr', 0):.2e}  {row.get('time_s', 0):.1f}s"
        )


def _rule(s: dict[str, Any]) -> str:
    """The weights rule in words: what best.pt holds."""
    from cmkd_edge.distill.weights import WEIGHT_RULES

    rule = (s.get("weights") or {}).get("rule", "best-val")
    return WEIGHT_RULES.get(rule).label if rule in WEIGHT_RULES else rule


def summary_text(s: dict[str, Any]) -> str:
    """The lines ``train-teacher`` / ``distill`` print after a run (``--json`` prints the dict instead).

    Kept beside the epoch lines so everything a run shows a person is written in one module.
    """
    synth = " [synthetic data]" if s["synthetic"] else ""
    lines = [
        f"{s['role']} {s['arch']} on {s['view']}{synth}: {s['status']} after {s['epochs_run']} epochs",
        f"  best.pt  epoch {s['best_epoch']} ({_rule(s)}), val {s['select_metric']} {s['best_val']:.4f}",
    ]
    if s["test"]:
        keys = [k for k in ("accuracy", "macro_f1", "ece", "map", "micro_f1") if k in s["test"]]
        lines.append("  test     " + ", ".join(f"{k} {s['test'][k]:.4f}" for k in keys) + f" (n={s['test']['n']})")
    lines.append(f"  run dir  {s['best_checkpoint'].rsplit('/', 1)[0]}")
    return "\n".join(lines)
