"""Multi-process training under torchrun: process-group set-up from the environment, rank helpers.

``torchrun --nproc_per_node N cmkd-edge train-teacher ...`` sets RANK / WORLD_SIZE / LOCAL_RANK /
MASTER_ADDR / MASTER_PORT; without them the run is a single process and nothing here does any
communication. Backend: NCCL on CUDA, gloo on CPU (the CPU test runs two gloo processes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, local rank, and whether it owns the files."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and prints."""
        return self.rank == 0


def env_info() -> DistInfo:
    """Read the torchrun environment (single process when WORLD_SIZE is unset or 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(device_kind: str) -> DistInfo:
    """Initialise the default process group from the environment if torchrun launched us.

    Args:
        device_kind: "cuda" (NCCL, one GPU per local rank) or "cpu" (gloo).
    """
    info = env_info()
    if info.enabled and not dist.is_initialized():
        if device_kind == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo", init_method="env://")
    return info


def cleanup() -> None:
    """Destroy the process group (if any) so the next run in this process starts clean."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(values: dict[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """Sum scalar values over ranks (used for epoch loss sums and sample counts)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return dict(zip(keys, t.tolist(), strict=True))
