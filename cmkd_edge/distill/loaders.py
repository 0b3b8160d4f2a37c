"""DataLoaders of the trainer: seeded shuffling, dataset indices in every batch, DDP sharding.

Methods receive a :class:`~cmkd_edge.distill.losses.base.Batch` whose ``index`` holds each sample's
dataset index (SemBridge re-pairs samples by index), so every training dataset is wrapped in
:class:`Indexed`. When some training samples carry no label, :class:`LabelledBatchSampler` makes the
batches: a share of labelled samples in every batch, the rest unlabelled (FixMatch's layout, Sohn et
al. 2020), so a 1 % labelled split still sees its labels every step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

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


class LabelledBatchSampler(Sampler[list[int]]):
    """Batches that mix labelled and unlabelled samples, a function of (seed, epoch) alone.

    An epoch is ``steps`` batches - by default one pass's worth over the whole training split, so
    ``--epochs`` means the same number of updates whatever the labelled fraction and the method.
    Each batch holds ``k`` labelled indices (the labelled set cycled, reshuffled every pass) and
    ``batch_size - k`` unlabelled ones: ``k = batch_size`` without unlabelled samples (a run without a
    teacher cycles its few labels), otherwise the larger of the labelled samples' natural share and
    ``share`` (at least one). Under DDP every rank builds the same list and takes every
    ``world``-th batch.
    """

    def __init__(self, labelled: Sequence[int], unlabelled: Sequence[int], batch_size: int, seed: int,
                 steps: int | None = None, share: float = 0.25, rank: int = 0, world: int = 1) -> None:
        self.labelled = np.asarray(labelled, dtype=np.int64)
        self.unlabelled = np.asarray(unlabelled, dtype=np.int64)
        if len(self.labelled) == 0:
            raise ValueError("a labelled batch sampler needs at least one labelled sample")
        self.batch_size = int(batch_size)
        total = len(self.labelled) + len(self.unlabelled)
        self.steps = int(steps) if steps is not None else max(1, total // self.batch_size)
        if len(self.unlabelled) == 0:
            self.k = self.batch_size
        else:
            natural = len(self.labelled) / total
            k = math.ceil(self.batch_size * max(natural, share))
            self.k = min(max(1, k), self.batch_size - 1)
        self.seed, self.rank, self.world = int(seed), int(rank), int(world)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(range(self.rank, self.steps, self.world))

    @staticmethod
    def _stream(items: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        reps = -(-n // max(len(items), 1))
        return np.concatenate([rng.permutation(items) for _ in range(reps)])[:n] if n else items[:0]

    def batches(self) -> list[list[int]]:
        """Every batch of this epoch (all ranks)."""
        rng = np.random.default_rng([self.seed, self.epoch, 0xBA7C])
        k, u = self.k, self.batch_size - self.k
        lab = self._stream(self.labelled, self.steps * k, rng)
        unl = self._stream(self.unlabelled, self.steps * u, rng)
        return [lab[i * k:(i + 1) * k].tolist() + unl[i * u:(i + 1) * u].tolist() for i in range(self.steps)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches()[self.rank::self.world])


def make_loader(
    dataset: Any,
    batch_size: int,
    shuffle: bool,
    seed: int,
    workers: int = 0,
    dist_info: DistInfo | None = None,
    drop_last: bool = False,
    device: torch.device | None = None,
    batch_sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader whose order is a function of ``seed`` alone (and of the epoch, under DDP).

    Under DDP the training set is sharded with a :class:`DistributedSampler` (seeded, ``set_epoch``
    each epoch); evaluation loaders are never sharded (rank 0 evaluates the whole split). A
    ``batch_sampler`` (e.g. :class:`LabelledBatchSampler`) replaces shuffling and batching.
    """
    ds = dataset if isinstance(dataset, Indexed) else Indexed(dataset)
    gen = torch.Generator()
    gen.manual_seed(seed)
    if batch_sampler is not None:
        return DataLoader(ds, batch_sampler=batch_sampler, num_workers=workers, generator=gen,
                          worker_init_fn=worker_init_fn if workers else None,
                          pin_memory=device is not None and device.type == "cuda")
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
