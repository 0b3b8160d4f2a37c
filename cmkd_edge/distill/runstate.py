"""Reproducibility plumbing of a run: seeding, RNG snapshots, the LR schedule, the metrics log.

Resume determinism rests on one rule: every epoch starts by re-seeding python, numpy and torch (and
the DataLoader's generator) from ``(seed, epoch)``. An epoch's randomness (shuffling, augmentation,
dropout) therefore depends only on the seed and the epoch number, never on what ran before in the
process, so a run resumed from last.pt after epoch k replays epochs k+1.. exactly as an uninterrupted
run does. RNG snapshots are saved too (the contract asks for them) and restored on resume, which
matters for code that draws random numbers outside the epoch loop.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cmkd_edge.fsutil import atomic_write_text


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct 63-bit seed per (run seed, epoch); epoch -1 is the set-up phase."""
    return (int(seed) * 1_000_003 + (epoch + 1) * 7919) % (2**63 - 1)


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy/python in a DataLoader worker from its torch seed (itself from the generator)."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def rng_state() -> dict[str, Any]:
    """Snapshot of every global RNG, as tensors and primitives (``weights_only``-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a :func:`rng_state` snapshot (CUDA states only if this machine has the devices)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up then cosine decay from 1 to ``min_ratio``, as a function of the global step."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step cosine schedule; its state is only the step count, so a resumed run continues it."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, min_ratio)
    )


def write_metrics_csv(path: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Rewrite metrics.csv atomically from the full history (one row per epoch)."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v
