"""Two processes on CPU (gloo) through torchrun: the run completes and only rank 0 writes files."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TINY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    exe = shutil.which("cmkd-edge", path=str(Path(sys.executable).parent)) or shutil.which("cmkd-edge")
    if exe is None:
        pytest.skip("the cmkd-edge console script is not installed")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
           "127.0.0.1", "--master-port", str(_free_port()), "--no-python", exe,
           "train-teacher", "--data", TINY, "--view", "sar", "--arch", "resnet-narrow", "--epochs", "2",
           "--batch-size", "8", "--device", "cpu", "--quiet", "--json", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # rank 0 alone prints: one JSON document
    assert summary["world_size"] == 2 and summary["status"] == "finished"
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt", "last.pt", "metrics.csv", "split.csv", "summary.json"]
    assert not list(out.glob(".*.tmp"))
