"""Training checkpoints: plain dicts of tensors and primitives, loadable with ``weights_only=True``.

A checkpoint records everything the next stage needs without the training code's objects: the arch
and its options, the view and its deploy-time preprocessing spec (band selection, units, clip,
per-band statistics of the training split), class names, seed and the exact command line (contract
in docs/architecture.md). Pickled objects are refused: ``weights_only`` loading never runs code.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from cmkd_edge.errors import CheckpointError
from cmkd_edge.fsutil import atomic_open

FORMAT = "cmkd-edge/checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "model", "state_dict", "task", "class_names", "view", "preprocess")


def save_checkpoint(path: str | os.PathLike[str], ckpt: dict[str, Any]) -> None:
    """Write ``ckpt`` atomically (temp file + rename): a crash never leaves a half-written file."""
    import torch

    ckpt = {"format": FORMAT, "version": VERSION, **ckpt}
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with atomic_open(path, "wb") as fh:
        fh.write(buf.getbuffer())


#: file names of what export/compile/bundle write, never a training checkpoint
_DEPLOYED = (".tar.gz", ".tgz", ".zip", ".onnx", ".xml", ".plan")


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
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
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a cmkd-edge checkpoint (no format tag {FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{p} has checkpoint version {ckpt.get('version')!r}; this cmkd-edge reads {VERSION}")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{p} lacks checkpoint fields: {', '.join(missing)}")
    ckpt["_path"] = str(p)
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]):
    """Rebuild the network a checkpoint describes, with its weights, in eval mode.

    The network applies the spec's clip itself (InputNorm), so an exported graph clips once. Only
    the clip is read here: scoring or distilling from a checkpoint needs no deploy spec.
    """
    from cmkd_edge.models import build_model

    cfg = ckpt["model"]
    pre = ckpt["preprocess"]
    clip = None if pre.get("centre") else pre.get("clip")  # PreprocessSpec.clip_in_net
    net = build_model(cfg["arch"], cfg["in_channels"], cfg["num_classes"], clip=clip, **cfg.get("kwargs", {}))
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint weights do not fit arch {cfg['arch']!r}: {str(exc).splitlines()[0]}"
        ) from None
    return net.eval()
