"""Every registered subcommand whose module exists answers --help with an example, importing no torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from cmkd_edge.cli import COMMANDS

from .conftest import run


def _importable(name: str) -> bool:
    module = COMMANDS[name].partition(":")[0]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return False  # that stage is not written yet
        raise
    return True


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help(name: str) -> None:
    if not _importable(name):
        pytest.skip(f"{COMMANDS[name]} is not written yet")
    res = run(name, "--help")
    assert res.exit_code == 0, res.output
    assert "Example" in res.output


def test_my_commands_exist() -> None:
    for name in ("train-teacher", "distill", "evaluate", "demo"):
        assert _importable(name)


def test_help_imports_no_torch() -> None:
    code = ("import sys; from click.testing import CliRunner; from cmkd_edge.cli import main;\n"
            "for c in ('train-teacher', 'distill', 'evaluate', 'demo'):\n"
            "    assert CliRunner().invoke(main, [c, '--help']).exit_code == 0\n"
            "assert 'torch' not in sys.modules, 'torch imported by --help'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
