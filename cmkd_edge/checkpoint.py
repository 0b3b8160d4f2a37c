"""Training checkpoints: typed metadata plus tensors, stored as a plain dict ``weights_only`` loads.

A checkpoint records everything the next stage needs without the training code's objects: the arch
and its options, the view and its deploy-time preprocessing spec (band selection, units, clip,
per-band statistics of the training split), class names, seed, the labels the run saw and the exact
command line (contract in docs/architecture.md). In memory it is a :class:`Checkpoint`: the
:class:`CheckpointMeta` record (decoded by the one record codec, so a bad field is a one-line
CheckpointError naming the field and the file), the ``state_dict`` and, in ``last.pt``, the
``train_state``. On disk it stays the flat dict earlier versions wrote, so their files still load.
Pickled objects are refused: ``weights_only`` loading never runs code.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmkd_edge.errors import CheckpointError
from cmkd_edge.fsutil import atomic_open
from cmkd_edge.runtime.contract.records import CheckpointMeta

FORMAT = CheckpointMeta.FORMAT
VERSION = CheckpointMeta.VERSION
_TENSORS = ("state_dict", "train_state")


@dataclass(frozen=True)
class Checkpoint:
    """A training checkpoint in memory: its record, its weights, where it was read from."""

    meta: CheckpointMeta
    state_dict: dict[str, Any]
    path: Path | None = None
    train_state: dict[str, Any] | None = None

    @classmethod
    def of(cls, state_dict: dict[str, Any], **meta: Any) -> Checkpoint:
        """A checkpoint from its weights and its metadata fields as plain values (decoded and
        checked by the record codec, as a stored file would be)."""
        return cls(CheckpointMeta.from_dict(meta), state_dict)

    def payload(self) -> dict[str, Any]:
        """The flat dict ``torch.save`` writes (the layout every cmkd-edge version reads)."""
        out = {**self.meta.to_dict(), "state_dict": self.state_dict}
        if self.train_state is not None:
            out["train_state"] = self.train_state
        return out

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "checkpoint"


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint) -> None:
    """Write ``ckpt`` atomically (temp file + rename): a crash never leaves a half-written file."""
    import torch

    buf = io.BytesIO()
    torch.save(ckpt.payload(), buf)
    with atomic_open(path, "wb") as fh:
        fh.write(buf.getbuffer())


#: file names of what export/compile/bundle write, never a training checkpoint
_DEPLOYED = (".tar.gz", ".tgz", ".zip", ".onnx", ".xml", ".plan")


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> Checkpoint:
    """Load and validate a checkpoint with ``torch.load(weights_only=True)``.

    Accepts a run directory too (loads ``best.pt`` from it).

    Raises:
        CheckpointError: missing file, not a torch file, a pickle payload that ``weights_only``
            refuses, or a dict that is not a cmkd-edge checkpoint.
    """
    import pickle

    import torch

    p = Path(path)
    if p.is_dir() and (p / "manifest.json").is_file() or p.name.lower().endswith(_DEPLOYED):
        # why before torch.load: torch's answer is about weights_only unpickling, which misleads
        raise CheckpointError(f"{p} is a deployment bundle or model, not a training checkpoint",
                              "give the run's best.pt (or run directory) it was exported from; "
                              "`cmkd-edge bundle BUNDLE --inspect` shows its provenance")
    if p.is_dir():
        p = p / "best.pt"
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{p} is not a safe cmkd-edge checkpoint (weights-only loading refused it: {first})",
            "only checkpoints written by cmkd-edge are accepted; they never need pickle",
        ) from None
    except Exception as exc:  # noqa: BLE001 - arbitrary bytes make the unpickler raise anything
        # (IndexError, KeyError, UnicodeDecodeError, zipfile errors, ...): all mean "not readable"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p} is not a readable checkpoint ({first})") from None
    return from_payload(ckpt, p)


def from_payload(payload: Any, path: Path | None = None) -> Checkpoint:
    """A stored checkpoint dict as a :class:`Checkpoint` (the record decoded, tensors kept).

    Raises:
        CheckpointError: not a cmkd-edge checkpoint, another version, or a field missing or of the
            wrong type (one line naming the field and the file).
    """
    where = path if path is not None else "checkpoint"
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a cmkd-edge checkpoint (no format tag {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{where} has checkpoint version {payload.get('version')!r}; "
                              f"this cmkd-edge reads {VERSION}")
    if not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint field 'state_dict' is missing (in {where})")
    meta = CheckpointMeta.from_dict({k: v for k, v in payload.items() if k not in _TENSORS},
                                    source=path)
    return Checkpoint(meta, payload["state_dict"], path, payload.get("train_state"))


def model_from_checkpoint(ckpt: Checkpoint):
    """Rebuild the network a checkpoint describes, with its weights, in eval mode.

    The network applies the spec's clip itself (InputNorm, ``clip_in_net``), so an exported graph
    clips once.
    """
    from cmkd_edge.models import build_model

    cfg = ckpt.meta.model
    net = build_model(cfg.arch, cfg.in_channels, cfg.num_classes, clip=ckpt.meta.preprocess.clip_in_net,
                      **cfg.kwargs)
    try:
        net.load_state_dict(ckpt.state_dict)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint weights do not fit arch {cfg.arch!r}: {str(exc).splitlines()[0]}"
        ) from None
    return net.eval()
