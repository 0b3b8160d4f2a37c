"""DataLoaders of the trainer: seeded shuffling, dataset indices in every batch, DDP sharding.

Methods receive a :class:`~cmkd_edge.distill.losses.base.Batch` whose ``index`` holds each sample's
dataset index (SemBridge re-pairs samples by index), so every training dataset is wrapped in
:class:`Indexed`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from cmkd_edge.distill.distributed import DistInfo
from cmkd_edge.distill.losses.base import Batch
from cmkd_edge.distill.runstate import worker_init_fn


class Indexed(Dataset):
    """``ds[i] -> (views, label, i)``; attributes of the wrapped dataset stay reachable."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
        views, label = self.dataset[i]
        return views, torch.as_tensor(label), i

    def __getattr__(self, name: str) -> Any:
        # why: methods inspect ctx.train_set.labels / class_names as on the raw dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def to_batch(raw: Any, device: torch.device) -> Batch:
    """Move a collated ``(views, labels, index)`` triple to ``device`` as a :class:`Batch`."""
    views, labels, index = raw
    nb = device.type == "cuda"
    return Batch(
        {k: v.to(device, non_blocking=nb) for k, v in views.items()},
        labels.to(device, non_blocking=nb),
        index,
    )


def make_loader(
    dataset: Any,
    batch_size: int,
    shuffle: bool,
    seed: int,
    workers: int = 0,
    dist_info: DistInfo | None = None,
    drop_last: bool = False,
    device: torch.device | None = None,
) -> DataLoader:
    """A DataLoader whose order is a function of ``seed`` alone (and of the epoch, under DDP).

    Under DDP the training set is sharded with a :class:`DistributedSampler` (seeded, ``set_epoch``
    each epoch); evaluation loaders are never sharded (rank 0 evaluates the whole split).
    """
    ds = dataset if isinstance(dataset, Indexed) else Indexed(dataset)
    gen = torch.Generator()
    gen.manual_seed(seed)
    sampler = None
    if shuffle and dist_info is not None and dist_info.enabled:
        sampler = DistributedSampler(
            ds, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True, seed=seed,
            drop_last=drop_last,
        )
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        generator=gen,
        worker_init_fn=worker_init_fn if workers else None,
        drop_last=drop_last and len(ds) > batch_size,
        pin_memory=device is not None and device.type == "cuda",
        persistent_workers=False,
    )
