"""CLI test helpers: a CliRunner invoking the root group, the tiny synthetic set, shared data paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

torch.set_num_threads(1)

TINY = "synthetic:per_class=6,size=16"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def run(*args: str) -> Result:
    """Invoke ``cmkd-edge ARGS`` in-process; stderr is kept apart from stdout."""
    from cmkd_edge.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=True)


@pytest.fixture(scope="session")
def cli_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "teacher"
    res = run("train-teacher", "--data", TINY, "--arch", "resnet-narrow", "--epochs", "1",
              "--batch-size", "8", "--quiet", "--out", str(out))
    assert res.exit_code == 0, res.output + res.stderr
    return out
