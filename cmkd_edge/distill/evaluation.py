"""Scoring a model on a split: used by the trainer (validation, final test) and ``cmkd-edge evaluate``.

Probabilities come from the model's logits (softmax, or sigmoid for multi-label) and the metrics from
:mod:`cmkd_edge.runtime.metrics`, so the trainer and the ``evaluate`` command can never disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cmkd_edge.data.layouts import same_data
from cmkd_edge.distill.loaders import make_loader
from cmkd_edge.errors import CheckpointError, ConfigError
from cmkd_edge.runtime.metrics import classification_report, require_class_names

if TYPE_CHECKING:
    from cmkd_edge.checkpoint import Checkpoint


@torch.no_grad()
def predict(
    model: nn.Module, loader: Any, view: str, device: torch.device, task: str = "multiclass"
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` in eval mode over ``loader``; return (probabilities (N, K), targets)."""
    was_training = model.training
    model.eval()
    probs, targets = [], []
    for views, labels, _ in loader:
        logits = model(views[view].to(device)).float()
        p = torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)
        probs.append(p.cpu().numpy())
        targets.append(labels.numpy())
    model.train(was_training)
    if not probs:
        return np.zeros((0, 0), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(probs), np.concatenate(targets)


def evaluate_model(
    model: nn.Module,
    dataset: Any,
    view: str,
    device: torch.device,
    batch_size: int = 128,
    workers: int = 0,
) -> dict[str, Any]:
    """Full metric report of ``model`` on ``dataset`` (its task and class names)."""
    loader = make_loader(dataset, batch_size, shuffle=False, seed=0, workers=workers)
    probs, targets = predict(model, loader, view, device, dataset.task)
    return classification_report(dataset.task, probs, targets, list(dataset.class_names))


def compatible_view(ckpt: Checkpoint, view_spec: str) -> None:
    """Refuse a ``--view`` override that does not feed the model what it was trained on.

    Compatible means the same channels (band names, in order) in the same units; e.g. a student
    trained on ``sar-sim`` may be scored on real ``sar``, an ``rgb`` model on ``bands:B04,B03,B02``.
    """
    from cmkd_edge.data.views import parse_view

    view = parse_view(view_spec)
    info = ckpt.meta.view_info
    want_bands = tuple(info.band_names or ())
    want_units = info.units
    if tuple(view.band_names) != want_bands or (want_units and view.units != want_units):
        raise ConfigError(
            f"view {view_spec!r} ({','.join(view.band_names)}, {view.units}) is not compatible with "
            f"the checkpoint's view {ckpt.meta.view!r} ({','.join(want_bands)}, {want_units})",
            "choose a view with the same bands in the same order and units",
        )


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | None,
    split: str = "test",
    view: str | None = None,
    batch_size: int = 128,
    device: str = "auto",
    workers: int = 0,
) -> dict[str, Any]:
    """Load a checkpoint, open ``split`` of ``data`` in its view and return the metric report.

    ``data`` None means the data the checkpoint was trained on.

    The split is the one the run used: a run directory's (or the checkpoint's folder's) split.csv is
    reused when present.

    Raises:
        CheckpointError: unreadable checkpoint, or the data's classes differ from the model's.
        ConfigError: an incompatible ``view`` override.
        DataError: missing data, a band or source the data lacks.
    """
    from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint
    from cmkd_edge.data import open_dataset

    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.meta
    if data is None:
        data = meta.config.get("data")  # the data it was trained on (None = synthetic)
    view_name = view or meta.view
    if view is not None and view != meta.view:
        compatible_view(ckpt, view)
    split_file = Path(ckpt.where).parent / "split.csv"
    trained_on = meta.data_path
    # the run's split table describes the data it was drawn from; other data (an external test
    # set) is scored on its own split (labels.csv split column) or one drawn with the run's seed
    own = same_data(data, trained_on)
    ds = open_dataset(
        data, views=[view_name], split=split, seed=meta.seed, augment=False,
        split_file=split_file if own and split_file.is_file() else None,
    )
    require_class_names(ds.class_names, list(meta.class_names), CheckpointError,
                        "the data's classes ({got}) differ from the checkpoint's ({want})")
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt).to(dev)
    n_in = len(ds.views[view_name].band_names)
    if n_in != model.in_channels:
        raise CheckpointError(
            f"view {view_name!r} of this data has {n_in} channels; the model expects {model.in_channels}"
        )
    report = evaluate_model(model, ds, view_name, dev, batch_size, workers)
    synthetic = bool(ds.describe().get("synthetic", data is None)) or bool(ds.views[view_name].synthetic)
    report.update(
        checkpoint=ckpt.where, split=split, view=view_name, role=meta.role,
        arch=meta.model.arch, data=data or "synthetic", synthetic=synthetic,
        split_table=("training run (split.csv)" if own and split_file.is_file()
                     else f"the data's own ({getattr(ds, 'split_origin', 'drawn')})"),
    )
    return report


def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA when present, else CPU; "cuda" without a GPU is a user error."""
    from cmkd_edge.errors import BackendUnavailableError

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailableError("device 'cuda' was requested but no CUDA GPU is available",
                                      "use --device cpu or auto")
    return torch.device(device)
