"""``export_checkpoint``: a student checkpoint in, a verified bundle with ``model.onnx`` out.

Steps, each recorded in the manifest: rebuild the network, wrap it with its deploy preprocessing,
export (see :mod:`cmkd_edge.export.onnx` for the exporter choice), check, slim, check again, compare
with torch on real samples at batch 1 and batch N, and write the bundle through a staging directory
so a killed export leaves the previous bundle untouched.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from cmkd_edge.export.bundle import finish_manifest, staged_dir
from cmkd_edge.export.onnx import (
    DEFAULT_OPSET,
    build_deploy_module,
    check_onnx,
    export_onnx,
    slim,
)
from cmkd_edge.export.parity import check_parity
from cmkd_edge.export.samples import RawSamples, load_raw_samples
from cmkd_edge.runtime.backends.device import package_versions
from cmkd_edge.runtime.contract.manifest import Artifact, Manifest
from cmkd_edge.runtime.contract.records import ONNX_FP32, DataProvenance, ExportRecord, ModelCard, Provenance
from cmkd_edge.runtime.contract.specs import OutputSpec, PreprocessSpec
from cmkd_edge.runtime.contract.units import synthetic_batch

from cmkd_edge.errors import DataError, ExportValidationError
from cmkd_edge.fsutil import sha256_file

if TYPE_CHECKING:
    from cmkd_edge.checkpoint import Checkpoint

MODEL_FILE = "model.onnx"
SPLIT_FILE = "split.csv"  # the training run's split table, kept in the bundle (see data_provenance)


#: The tools of export itself; every backend's (its library and extra, from its declaration) follow
#: in ``export_tools()``. Both are recorded in ``provenance.tools``, where installed.
EXPORT_TOOLS = ("cmkd-edge", "torch", "onnx", "onnxscript", "onnxslim")


def export_tools() -> tuple[str, ...]:
    """Every tool that shapes a bundle's artifacts: export's own, then each backend's."""
    from cmkd_edge.runtime.backends import tool_modules

    return (*EXPORT_TOOLS, *tool_modules())


def preprocess_spec(ckpt: Checkpoint) -> PreprocessSpec:
    """The checkpoint's deploy preprocessing (already typed and checked when it was loaded).

    Raises:
        CheckpointError: the spec has no band statistics.
    """
    from cmkd_edge.errors import CheckpointError

    spec = ckpt.meta.preprocess
    if not spec.has_stats:
        raise CheckpointError(f"{ckpt.where}: the preprocessing spec has no band statistics",
                              "re-save the checkpoint with a current cmkd-edge trainer")
    return spec


def run_split_file(ckpt: Checkpoint) -> Path | None:
    """The training run's drawn split (``split.csv`` beside the checkpoint), if it has one."""
    split_file = Path(ckpt.where).parent / "split.csv"
    return split_file if split_file.is_file() else None


def trained_hw(ckpt: Checkpoint, hw: tuple[int, int] | None) -> tuple[int, int] | None:
    """The patch size the student was trained on (checkpoint ``input_hw``).

    ``hw`` is honoured only for checkpoints saved before ``input_hw`` was recorded; for newer ones
    it must agree, because the bundle's input size is a promise about the trained model.
    """
    rec = ckpt.meta.input_hw
    if rec is None:
        return None if hw is None else (int(hw[0]), int(hw[1]))
    trained = (int(rec[0]), int(rec[1]))
    if hw is not None and tuple(int(v) for v in hw) != trained:
        raise ExportValidationError(f"input size {hw[0]}x{hw[1]} was asked for, but the student was "
                                    f"trained on {trained[0]}x{trained[1]} patches",
                                    "drop the size override; it is only for old checkpoints")
    return trained


def parity_samples(ckpt: Checkpoint, spec: PreprocessSpec, data: str | None, n: int,
                   seed: int, hw: tuple[int, int] | None) -> RawSamples:
    """Real samples of the validation split (the checkpoint's data unless ``data`` is given);
    random values in the expected range only when no data can be read (recorded as such).

    ``hw`` is the trained patch size (``trained_hw``): readable data of another size is refused,
    since a different patch size would otherwise silently become the bundle's input size.

    Raises:
        ExportValidationError: the data's patches are not ``hw``, or no size is known at all.
    """
    source = data or ckpt.meta.data_path
    split_file = run_split_file(ckpt)
    # the run's split table only fits the run's data: other data is read with its own split,
    # rather than falling back to random values that would hide its patch size
    tables = [str(split_file), None] if split_file else [None]
    for table in tables:
        try:
            raw = load_raw_samples(source, spec, ckpt.meta.view, "val", n=n, seed=seed,
                                   split_file=table)
            break
        except (DataError, ImportError, OSError) as exc:
            why = getattr(exc, "message", str(exc))
    else:
        raw = None
    if raw is not None:
        got = tuple(int(v) for v in raw.x.shape[-2:])
        if hw is not None and got != tuple(hw):
            raise ExportValidationError(
                f"parity data {raw.info.get('data')} has {got[0]}x{got[1]} patches; the student was "
                f"trained on {hw[0]}x{hw[1]}", "export with data of the training patch size")
        return raw
    if hw is None:
        raise ExportValidationError(
            f"the input size is unknown: the checkpoint predates input_hw and no parity data could "
            f"be read ({str(why)[:120]})", "pass --data with the training data, or --input-hw H,W")
    x = synthetic_batch(spec.source_units, len(spec.source_bands), hw, n, seed)
    return RawSamples(x=x, labels=np.zeros(n, np.int64),
                      info={"data": "random", "why": str(why)[:200], "n": n, "synthetic": True})


def model_card(ckpt: Checkpoint, onnx_path: Path) -> ModelCard:
    """The model card's facts from the checkpoint and the exported graph (``report`` prints them)."""
    import shlex
    import sys

    from cmkd_edge.export.complexity import onnx_complexity

    meta = ckpt.meta
    size = onnx_complexity(onnx_path)
    return ModelCard(model=meta.model, params=size["params"], macs=size["macs"], teacher=meta.teacher,
                     method_options=dict(meta.method_options), train_command=meta.command,
                     export_command=shlex.join(["cmkd-edge", *sys.argv[1:]]))


def data_provenance(ckpt: Checkpoint, root: Path) -> DataProvenance:
    """What quantize needs to draw the training run's own splits: data path, seed, split table.

    The run's ``split.csv`` is copied into the bundle (checksummed like every file) rather than
    referenced by path: it is small, and a bundle moved to another machine keeps the exact split
    that separates training from test samples.
    """
    desc = ckpt.meta.data
    split_file = run_split_file(ckpt)
    out = DataProvenance(path=desc.get("path"), seed=ckpt.meta.seed, layout=desc.get("layout"),
                         split_origin=desc.get("split_origin"))
    if split_file is not None:
        shutil.copyfile(split_file, root / SPLIT_FILE)
        out = replace(out, split_file=SPLIT_FILE, split_source=str(split_file.resolve()),
                      split_sha256=sha256_file(split_file))
    return out


def label_thresholds(ckpt: Checkpoint, spec: PreprocessSpec, data: str | None,
                     onnx_path: Path, seed: int) -> tuple[tuple[float, ...] | None, dict[str, Any]]:
    """Per-class decision thresholds of a multi-label student, chosen on its validation split.

    The exported FP32 graph scores the whole validation split (raw inputs, as on the device) and
    each class gets the threshold that maximises its F1 (``runtime.metrics.choose_thresholds``).
    Returns (thresholds or None, how they were chosen - or why not - for ``provenance``).
    """
    from cmkd_edge.export.quantize.gate import run
    from cmkd_edge.runtime.classifier import activate
    from cmkd_edge.runtime.metrics import choose_thresholds

    source = data or ckpt.meta.data_path
    split_file = run_split_file(ckpt)
    try:
        raw = load_raw_samples(source, spec, ckpt.meta.view, "val", seed=seed,
                               split_file=str(split_file) if split_file else None)
    except (DataError, ImportError, OSError) as exc:
        return None, {"chosen": False, "why": f"validation split unreadable: "
                                              f"{getattr(exc, 'message', str(exc))[:160]}"}
    probs = activate(run("onnxruntime", onnx_path, raw.x), "sigmoid")
    th = choose_thresholds(probs, raw.labels)
    return tuple(th), {"chosen": True, "split": "val", "n": len(raw), "data": raw.info.get("data"),
                       "rule": "per class, the F1-maximising threshold on a 0.05 grid; classes with "
                               "fewer than 3 positives keep 0.5"}


def existing_bundle(out: str | os.PathLike[str]) -> list[str] | None:
    """What ``export --out`` would replace: the artifact ids (and other files) of a bundle there,
    None when ``out`` is free (missing or an empty directory).

    Raises:
        BundleError: ``out`` exists and is not a bundle (a file, or a directory of other things):
            export replaces a bundle whole, so it never takes over someone else's directory.
    """
    from cmkd_edge.runtime.contract.manifest import read_manifest

    from cmkd_edge.errors import BundleError

    p = Path(out)
    if not p.exists() or (p.is_dir() and not any(p.iterdir())):
        return None
    if not (p.is_dir() and (p / "manifest.json").is_file()):
        raise BundleError(f"{p} exists and is not a bundle; export writes a whole bundle directory",
                          "choose a new or empty --out")
    try:
        m = read_manifest(p)
        return [a.id for a in m.artifacts]
    except BundleError:
        return sorted(q.relative_to(p).as_posix() for q in p.rglob("*") if q.is_file())


def export_checkpoint(ckpt_path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                      opset: int = DEFAULT_OPSET, exporter: str = "auto", data: str | None = None,
                      samples: int = 16, batch: int = 8, max_batch: int | None = None,
                      seed: int = 0, hw: tuple[int, int] | None = None,
                      force: bool = False) -> Path:
    """Export a checkpoint (file or run dir) into the bundle directory ``out``.

    Args:
        opset: ONNX opset to write (checked against the installed runtimes).
        exporter: ``auto`` | ``dynamo`` | ``legacy`` (see module :mod:`cmkd_edge.export.onnx`).
        data: dataset for the parity samples (default: the checkpoint's own data).
        samples, batch: parity on ``samples`` validation samples, at batch 1 and ``batch``.
        max_batch: largest batch the bundle promises (recorded; TensorRT profiles use it).
        hw: input height/width, only for checkpoints without ``input_hw`` (older trainers).
        force: replace a bundle already at ``out``. Without it export refuses and names what would
            be replaced (issue 9: re-exporting silently dropped the INT8 model and the IRs).
    Returns:
        The bundle directory.
    Raises:
        CheckpointError, ExportValidationError (every failed check named in one message).
    """
    import torch

    from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint
    from cmkd_edge.errors import BundleError

    there = existing_bundle(out)
    if there is not None and not force:
        raise BundleError(f"{out} already holds a bundle; export would replace it and its "
                          f"{len(there)} artifact(s): {', '.join(there)}",
                          "pass --force to replace it (quantize/compile again afterwards), or "
                          "export to another --out")
    ckpt = load_checkpoint(ckpt_path)
    spec = preprocess_spec(ckpt)
    net = model_from_checkpoint(ckpt)
    if net.in_channels != len(spec.select):
        raise ExportValidationError(f"network takes {net.in_channels} bands but the preprocessing "
                                    f"selects {len(spec.select)}")
    module = build_deploy_module(net, spec)
    raw = parity_samples(ckpt, spec, data, max(samples, batch), seed, trained_hw(ckpt, hw))
    h, w = raw.x.shape[-2:]
    meta = ckpt.meta
    inp = spec.input_spec((h, w), modality=meta.view_info.modality)

    def torch_fn(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    out = Path(out)
    with staged_dir(out) as tmp:
        onnx_path = tmp / MODEL_FILE
        asked = export_onnx(module, torch.from_numpy(raw.x[:2].copy()), onnx_path, opset, exporter)
        check_onnx(onnx_path, opset)
        slim_info = slim(onnx_path)
        checks = check_onnx(onnx_path, opset)
        parity = check_parity(torch_fn, onnx_path, raw.x, batches=(1, batch))
        parity["samples_from"] = raw.info
        thresholds, how = (label_thresholds(ckpt, spec, data, onnx_path, seed)
                           if meta.task == "multilabel" else (None, None))
        fp32 = Artifact(id=ONNX_FP32, path=MODEL_FILE, format="onnx", precision="fp32",
                        backend="onnxruntime", files=(MODEL_FILE,), opset=checks["opset"],
                        ir_version=checks["ir_version"], max_batch=max_batch,
                        extra={"parity": {k: parity[k] for k in ("max_abs_diff", "top1_identical",
                                                                 "cases", "batches", "atol")}})
        manifest = Manifest(
            task=meta.task, class_names=meta.class_names, input=inp,
            output=OutputSpec(activation="sigmoid" if meta.task == "multilabel" else "softmax",
                              thresholds=thresholds),
            preprocess=spec, artifacts=(fp32,),
            provenance=Provenance(
                student_checkpoint_sha256=sha256_file(ckpt.where),
                teacher_checkpoint_sha256=None if meta.teacher is None else meta.teacher.sha256,
                method=meta.method, arch=meta.model.arch, view=meta.view,
                view_synthetic=meta.view_info.synthetic, role=meta.role,
                checkpoint_metrics=meta.metrics, labels=meta.labels, pairing=meta.pairing,
                tools=package_versions(export_tools()), data=data_provenance(ckpt, tmp),
                export=ExportRecord.from_dict({**asked, **checks, "slim": slim_info, "parity": parity}),
                thresholds=how, card=model_card(ckpt, onnx_path),
            ))
        finish_manifest(tmp, manifest)
    return out
