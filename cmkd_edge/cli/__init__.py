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
    "device": "cmkd_edge.cli.device:device",
    "select": "cmkd_edge.cli.select:select",
    "report": "cmkd_edge.cli.report:report",
}

#: command -> import names it needs beyond the base install (the runtime: numpy, click, rich,
#: onnxruntime, Pillow; GeoTIFFs need [geo]).
#: Checked after the options are parsed (``--help`` works everywhere) and
#: before any work; a need that depends on the options (``quantize --backend openvino``,
#: ``profile --plot``) is checked by the command itself with :func:`cmkd_edge.cli._extras.require`.
REQUIRES: dict[str, tuple[str, ...]] = {
    "train-teacher": ("torch",),
    "distill": ("torch",),
    # evaluate: torch only for a checkpoint or a dataset (the command checks); a bundle scored on
    # saved arrays (--data FILE.npz) runs on the base install
    "match": ("torch",),
    "diagnose": ("torch",),
    "mfh": ("torch",),
    "export": ("torch", "onnx", "onnxslim"),
    "quantize": ("torch", "onnx"),
    "demo": ("torch", "onnx", "onnxscript", "onnxslim"),
}

DEBUG_HELP = "Show full tracebacks for errors (before or after the subcommand)."


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        cmd = getattr(importlib.import_module(module_name), attr)
        _prepare(cmd, REQUIRES.get(cmd_name, ()))
        return cmd

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
        except ImportError as exc:  # a late import of an optional package the table did not foresee
            from cmkd_edge.cli._extras import missing_extra_error

            err = missing_extra_error(exc, ctx.invoked_subcommand or "this command")
            if err is None or ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {err.one_line()}", err=True)
            sys.exit(err.exit_code)
        except OSError as exc:
            line = environment_error(exc)
            if line is None or ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {line}", err=True)
            sys.exit(1)


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().params["debug"] = True


def _prepare(cmd: click.Command, modules: tuple[str, ...]) -> None:
    """Give ``cmd`` (and a group's subcommands) ``--debug`` and the check of ``modules``; once.

    Why ``--debug`` on every subcommand: users type it at the end (``cmkd-edge classify ... --debug``)
    and click answered ``No such option: --debug Did you mean --rebuild?``. Why the check wraps the
    callback: it then runs after parsing, so ``--help`` and usage errors come first and work on a
    runtime-only install, and before the body, so nothing starts that cannot finish.
    """
    if getattr(cmd, "_cmkd_prepared", False):
        return
    cmd._cmkd_prepared = True  # type: ignore[attr-defined]
    if not any(p.name == "debug_flag" for p in cmd.params):
        cmd.params.append(click.Option(["--debug", "debug_flag"], is_flag=True, expose_value=False,
                                       is_eager=True, callback=_set_debug, help=DEBUG_HELP))
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _prepare(sub, modules)
        return
    if modules and cmd.callback is not None:
        body = cmd.callback

        def checked(*args: Any, **kwargs: Any) -> Any:
            from cmkd_edge.cli._extras import require

            ctx = click.get_current_context()
            names = []
            while ctx.parent is not None:
                names.append(ctx.info_name or "")
                ctx = ctx.parent
            require(" ".join(reversed(names)), modules=modules)
            return body(*args, **kwargs)

        checked.__doc__, checked.__name__ = body.__doc__, body.__name__
        cmd.callback = checked


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
@click.option("--debug", is_flag=True, help=DEBUG_HELP)
def main(debug: bool) -> None:
    """Cross-modal knowledge distillation, from experiment to edge device.

    \b
    Example:
      cmkd-edge demo --workdir runs/demo
    """


if __name__ == "__main__":  # pragma: no cover
    main()
