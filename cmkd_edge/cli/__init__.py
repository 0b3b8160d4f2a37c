"""The ``cmkd-edge`` command: a click group whose subcommands are imported only when used.

Command modules import click and stdlib at the top and import torch/onnx/nncf/backends inside the
command body, so ``cmkd-edge classify`` starts on a runtime-only device (click docs, "Lazily Loading
Subcommands"; Polygraphy ``tools/_main.py``).
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from typing import Any

import click

from cmkd_edge import __version__
from cmkd_edge.errors import CmkdError

# name -> "module:attribute"; one module per stage. Later stages add their lines here.
COMMANDS: dict[str, str] = {
    "list": "cmkd_edge.cli.listing:list_cmd",
    "train-teacher": "cmkd_edge.cli.train:train_teacher",
    "distill": "cmkd_edge.cli.train:distill",
    "evaluate": "cmkd_edge.cli.evaluate:evaluate",
    "demo": "cmkd_edge.cli.demo:demo",
    "match": "cmkd_edge.cli.methods:match",
    "mfh": "cmkd_edge.cli.methods:mfh",
    "diagnose": "cmkd_edge.cli.methods:diagnose",
    "export": "cmkd_edge.cli.export:export",
    "quantize": "cmkd_edge.cli.export:quantize",
    "compile": "cmkd_edge.cli.export:compile_cmd",
    "bundle": "cmkd_edge.cli.export:bundle",
    "classify": "cmkd_edge.cli.runtime:classify",
    "profile": "cmkd_edge.cli.runtime:profile",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context) -> Any:
        """Turn a :class:`CmkdError` into one line and its exit code, unless ``--debug``.

        A full disk, a quota, a read-only or forbidden location is not a bug either: it becomes one
        line naming the file and exit code 1 (writers are atomic, so the old files are still there).
        """
        try:
            return super().invoke(ctx)
        except CmkdError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {exc.one_line()}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            line = environment_error(exc)
            if line is None or ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {line}", err=True)
            sys.exit(1)


#: errno values that mean "the machine refused the write/read", not "the program is wrong"
ENVIRONMENT_ERRNOS = frozenset(getattr(errno, n) for n in (
    "ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "EIO") if hasattr(errno, n))
_HINTS = {errno.ENOSPC: "free some space or write elsewhere; files written before are unchanged",
          errno.EROFS: "write to a writable location", errno.EACCES: "check the permissions"}
if hasattr(errno, "EDQUOT"):
    _HINTS[errno.EDQUOT] = _HINTS[errno.ENOSPC]


def environment_error(exc: OSError) -> str | None:
    """One line for an OSError caused by the machine (disk full, read-only, ...), else None."""
    import re
    import shutil

    code, name, text = exc.errno, exc.filename, exc.strerror
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        # copytree collects (src, dst, "[Errno N] why: 'path'") triples
        src, dst, why = (list(exc.args[0][0]) + ["", "", ""])[:3]
        m = re.match(r"\[Errno (\d+)\] ([^:]+)", str(why))
        if m is None:
            return None
        code, name, text = int(m.group(1)), dst or src, m.group(2)
    if code not in ENVIRONMENT_ERRNOS:
        return None
    where = f": {name}" if name else ""
    hint = _HINTS.get(code)
    return f"{text or os.strerror(code)}{where}" + (f"; {hint}" if hint else "")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cmkd-edge")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
def main(debug: bool) -> None:
    """Cross-modal knowledge distillation, from experiment to edge device.

    \b
    Example:
      cmkd-edge demo --workdir runs/demo
    """


if __name__ == "__main__":  # pragma: no cover
    main()
