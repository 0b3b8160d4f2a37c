"""``open_dataset``: one split of a dataset as a torch ``Dataset`` of co-registered views.

``ds[i] -> ({view name: (C, H, W) float32 tensor}, label)`` so a teacher and a student read different
views of the same patch in one batch. Random parts of a sample (sar-sim speckle, augmentation) come
from a generator seeded by (seed, sample index): evaluation is reproducible, and with
``augment=True`` the stream also depends on the epoch (``set_epoch``, or the DataLoader worker seed
and a per-sample visit count), so speckle and flips are fresh every epoch. Everything but the
tensors is :class:`~cmkd_edge.data.split_views.ViewSplit` (numpy, no torch).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from cmkd_edge.data.labels import label_tensor
from cmkd_edge.data.split_views import ViewSpec, ViewSplit, open_split


class ViewDataset(ViewSplit, Dataset):
    """:class:`ViewSplit` as a torch ``Dataset``: ``ds[i]`` is (views as tensors, label tensor)."""

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = int(i) % len(self)
        arrays = self.view_arrays(i)
        # why: copy, so in-place ops on a batch can never corrupt the cached catalog arrays
        views = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in arrays.items()}
        return views, label_tensor(self.labels[i], self.task)

    def _worker_seed(self) -> int:
        info = torch.utils.data.get_worker_info()
        return int(info.seed % (2**32)) if info is not None else 0


def open_dataset(path: str | os.PathLike[str] | None = None,
                 views: Iterable[ViewSpec] | ViewSpec = ("ms",), split: str = "train",
                 seed: int = 0, augment: bool = False,
                 split_file: str | os.PathLike[str] | None = None) -> ViewDataset:
    """Open one split of a dataset with the given views, as a torch Dataset (see
    :func:`~cmkd_edge.data.split_views.open_split` for the arguments and errors)."""
    ds = open_split(path, views, split, seed, augment, split_file, cls=ViewDataset)
    assert isinstance(ds, ViewDataset)
    return ds
