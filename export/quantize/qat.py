"""Teacher-guided quantization-aware training (QAT): the ``int8-qat`` rung's fine-tuning.

Post-training INT8 loses accuracy on students whose weights or activations do not fit an 8-bit grid
(depthwise MobileNet-style students are the usual victims: one 3x3 kernel per channel, wide
per-channel ranges). The field's answer is QAT (field notes: an Ultralytics change reports -3.8 mAP
with PTQ, -0.8 with QAT). Here the student is fine-tuned for a few epochs with torch's own fake
quantization (``torch.ao.quantization`` eager ``prepare_qat``: FakeQuantize modules with
straight-through gradients; NNCF's PyTorch backend fails on torch 2.13, field notes) with the loss
``CE + KD`` against the distillation teacher named in the checkpoint, or against the FP32 student
itself when the checkpoint names none (self-distillation keeps the fine-tune close to FP32).

The fake quantization mimics the QDQ the PTQ rungs write (``ort.choose_int8_types``): per-channel
symmetric weights (7-bit when the CPU needs ``reduce_range``), per-tensor affine uint8 (or int8)
activations. Per-channel weight quantization is equivariant to folding BatchNorm into the conv
(the fold scales each output channel), so training on unfolded weights sees the grid the exported,
folded weights get. The preprocessing (band selection, dB, clip, normalisation) is never fake-
quantized: the network's ``InputNorm`` has no qconfig and the wrapper's ops are not trained.

After training, the fine-tuned FP32 weights are exported through the same deploy wrapper and
exporter as ``cmkd-edge export`` and then quantized by the PTQ rungs' own quantizer (ORT static QDQ,
minmax, preprocessing kept float), so the ``int8-qat`` artifact is the same QDQ ONNX format that
ONNX Runtime, OpenVINO and TensorRT take; it is gated like any rung.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmkd_edge.errors import QuantizationError
from cmkd_edge.fsutil import sha256_file

if TYPE_CHECKING:
    from cmkd_edge.checkpoint import Checkpoint

CHECKPOINT_NAMES = ("best.pt", "last.pt")


@dataclass(frozen=True)
class QatConfig:
    """Fine-tuning hyper-parameters (recorded in the manifest).

    ``lr`` is small on purpose: QAT starts from a trained student and only has to move weights onto
    the grid; ``freeze_observers_at`` (fraction of the run) stops range updates so the last epochs
    train against the scales the export will use; BatchNorm statistics stay frozen throughout.
    """

    epochs: int = 3
    lr: float = 1e-4
    batch_size: int = 32
    temperature: float = 4.0
    ce_weight: float = 1.0
    kd_weight: float = 1.0
    freeze_observers_at: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise QuantizationError(f"--qat-epochs must be >= 1 for the int8-qat rung (got {self.epochs})")
        if self.lr <= 0 or self.batch_size < 1 or self.temperature <= 0:
            raise QuantizationError("QAT needs lr > 0, batch size >= 1 and temperature > 0")


@dataclass(frozen=True)
class QatPlan:
    """What the ``int8-qat`` rung needs, resolved before any rung runs.

    ``missing`` is a one-line reason when the checkpoint or the training data cannot be had; the
    rung then fails with that reason (and the rest of the ladder still runs).
    """

    checkpoint: Path | None
    data: str | None
    seed: int
    split_file: Path | None
    config: QatConfig = field(default_factory=QatConfig)
    missing: str | None = None

    @classmethod
    def resolve(cls, manifest: Any, root: Path, checkpoint: str | None, data: str | None,
                config: QatConfig) -> QatPlan:
        """Find the student checkpoint (``checkpoint``, else beside the training run's split file)
        and check it is the one the bundle was exported from (``provenance.student_checkpoint_sha256``).

        Raises:
            QuantizationError: an explicitly given checkpoint is missing or is another student.
        """
        from cmkd_edge.export.samples import Recorded

        rec = Recorded.from_manifest(manifest, root)
        prov = manifest.provenance
        want = prov.student_checkpoint_sha256
        data = data if isinstance(data, str) else rec.path  # arrays cannot be trained on
        common = {"data": data, "seed": rec.seed, "split_file": rec.split_file, "config": config}
        if checkpoint is not None:
            path = Path(checkpoint)
            path = path / "best.pt" if path.is_dir() else path
            if not path.is_file():
                raise QuantizationError(f"--checkpoint {checkpoint} not found")
            got = sha256_file(path)
            if want and got != want:
                raise QuantizationError(
                    f"--checkpoint {path} is not the student this bundle was exported from "
                    f"(sha256 {got[:12]}, bundle records {want[:12]})",
                    "give the checkpoint `cmkd-edge export` read (provenance.student_checkpoint_sha256)")
            return cls(checkpoint=path, **common)
        source = prov.data.split_source if prov.data is not None else None
        looked = [Path(source).parent / n for n in CHECKPOINT_NAMES] if source else []
        for cand in looked:
            if cand.is_file() and (not want or sha256_file(cand) == want):
                return cls(checkpoint=cand, **common)
        where = f" (looked for {', '.join(str(p) for p in looked)})" if looked else ""
        return cls(checkpoint=None, **common, missing=(
            f"int8-qat needs the student checkpoint the bundle was exported from{where}; "
            "pass --checkpoint PATH"))


@contextlib.contextmanager
def _quiet_ao() -> Iterator[None]:
    """why: torch 2.13 warns on every ``torch.ao.quantization`` call that eager mode is deprecated in
    favour of torchao; torchao is not a dependency and the eager API is what the field notes measured
    working here, so the warning is not actionable for a user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def fake_quant_qconfig(types: dict[str, Any]) -> Any:
    """torch.ao QConfig matching the QDQ types the PTQ rungs write for this CPU."""
    import torch
    import torch.ao.quantization as tq

    unsigned = types["activation"] == "QUInt8"
    act = tq.FakeQuantize.with_args(
        observer=tq.MovingAverageMinMaxObserver, dtype=torch.quint8 if unsigned else torch.qint8,
        quant_min=0 if unsigned else -128, quant_max=255 if unsigned else 127,
        qscheme=torch.per_tensor_affine if unsigned else torch.per_tensor_symmetric)
    lo, hi = (-64, 63) if types.get("reduce_range") else (-128, 127)
    weight = tq.FakeQuantize.with_args(
        observer=tq.MovingAveragePerChannelMinMaxObserver, dtype=torch.qint8, quant_min=lo,
        quant_max=hi, qscheme=torch.per_channel_symmetric, ch_axis=0)
    return tq.QConfig(activation=act, weight=weight)


def prepare(net: Any, types: dict[str, Any]) -> Any:
    """A fake-quantized training copy of ``net``: conv/linear weights and every module output
    (activations) fake-quantized, the network input quantized after ``InputNorm`` (as the QDQ model
    quantizes the first conv's input), ``InputNorm`` itself float, BatchNorm statistics frozen."""
    import torch.ao.quantization as tq
    from torch import nn

    q = copy.deepcopy(net)
    q.norm = nn.Sequential(q.norm, tq.QuantStub())
    q.qconfig = fake_quant_qconfig(types)
    q.norm[0].qconfig = None  # preprocessing stays float, as in the PTQ rungs
    q.train()
    with _quiet_ao():
        tq.prepare_qat(q, inplace=True)
    freeze_bn(q)
    return q


def freeze_bn(model: Any) -> None:
    """BatchNorm in eval mode: few-epoch QAT on small batches must not re-estimate statistics."""
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def float_weights(net: Any, qat_model: Any) -> Any:
    """A copy of ``net`` carrying the fine-tuned weights (fake-quant state dropped)."""
    out = copy.deepcopy(net)
    qsd = qat_model.state_dict()
    sd = out.state_dict()
    missing = [k for k in sd if not k.startswith("norm.") and k not in qsd]
    if missing:
        raise QuantizationError(f"QAT model lacks weights {', '.join(missing[:3])}")
    out.load_state_dict({k: (v if k.startswith("norm.") else qsd[k]) for k, v in sd.items()})
    return out.eval()


def _teacher(ckpt: Checkpoint, student: Any) -> tuple[Any, str, dict[str, Any]]:
    """The checkpoint's distillation teacher (hash-checked), or the FP32 student itself."""
    from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint

    t = ckpt.meta.teacher
    if t is not None and t.path:
        p = Path(t.path)
        p = p / "best.pt" if p.is_dir() else p
        if p.is_file():
            got = sha256_file(p)
            if not t.sha256 or got == t.sha256:
                tck = load_checkpoint(p)
                return model_from_checkpoint(tck), tck.meta.view, {
                    "kind": "distillation teacher", "path": str(p), "sha256": got,
                    "arch": t.arch, "view": tck.meta.view}
            why = f"teacher {p} has sha256 {got[:12]}, the checkpoint names {t.sha256[:12]}"
        else:
            why = f"teacher {p} not found"
    else:
        why = "the checkpoint names no teacher"
    return copy.deepcopy(student).eval(), ckpt.meta.view, {
        "kind": "FP32 student (self-distillation)", "why": why,
        "sha256": sha256_file(ckpt.where), "view": ckpt.meta.view}


def kd_term(student: Any, teacher: Any, temperature: float, multilabel: bool) -> Any:
    """The trainer's KD loss (``distill.losses.kd.kd_loss``: Hinton et al. 2015, KL(p_t || p_s) at
    temperature T times T^2, mean over samples; multi-label: the per-class Bernoulli KL), so QAT and
    distillation optimise one KD. Multi-label is divided by the class count to keep the term on the
    scale of the per-class CE it is added to.

    Args:
        student, teacher: logits (N, K); the teacher is not differentiated.
    """
    from cmkd_edge.distill.losses.kd import kd_loss

    loss = kd_loss(student, teacher, temperature, multilabel=multilabel)
    return loss / student.shape[1] if multilabel else loss


def finetune(plan: QatPlan, types: dict[str, Any],
             say: Callable[[str], None] = lambda _m: None) -> tuple[Any, dict[str, Any], Any]:
    """Fine-tune the plan's student with fake quantization and CE + KD.

    Returns:
        (FP32 network with the fine-tuned weights, the record for the manifest, the checkpoint).
    Raises:
        QuantizationError: no checkpoint / data (the plan's reason), or training failed.
    """
    import torch
    import torch.ao.quantization as tq

    from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint
    from cmkd_edge.data import open_dataset
    from cmkd_edge.errors import CmkdError

    if plan.missing:
        raise QuantizationError(plan.missing)
    cfg = plan.config
    ckpt = load_checkpoint(plan.checkpoint)
    student = model_from_checkpoint(ckpt)
    teacher, tview, trec = _teacher(ckpt, student)
    sview = ckpt.meta.view
    views = [sview] if tview == sview else [sview, tview]
    try:
        ds = open_dataset(plan.data, views=views, split="train", seed=plan.seed, augment=False,
                          split_file=str(plan.split_file) if plan.split_file else None)
    except CmkdError as exc:
        raise QuantizationError(f"int8-qat needs the training data ({plan.data or 'synthetic'}): "
                                f"{exc.message}", "pass --calib-data with the training data") from None
    if tuple(ds.class_names) != ckpt.meta.class_names:
        raise QuantizationError(f"QAT data {plan.data} has other classes than the student")
    from cmkd_edge.export.samples import ds_view_name

    xs = torch.from_numpy(np.ascontiguousarray(ds.view_batch(ds_view_name(ds, sview))))
    xt = xs if tview == sview else torch.from_numpy(
        np.ascontiguousarray(ds.view_batch(ds_view_name(ds, tview))))
    multilabel = ckpt.meta.task == "multilabel"
    y = torch.from_numpy(np.asarray(ds.labels)).float() if multilabel else \
        torch.from_numpy(np.asarray(ds.labels)).long()
    torch.manual_seed(cfg.seed)
    with torch.no_grad():  # the teacher is fixed and sees unaugmented inputs: logits once
        t_logits = torch.cat([teacher(xt[i:i + 64]) for i in range(0, len(xt), 64)])
    model = prepare(student, types)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=0.0)
    steps = cfg.epochs * math.ceil(len(xs) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    gen = torch.Generator().manual_seed(cfg.seed)
    freeze_at = max(1, math.ceil(cfg.freeze_observers_at * cfg.epochs)) if cfg.epochs > 1 else cfg.epochs
    epochs: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with _quiet_ao():
        for ep in range(cfg.epochs):
            if ep == freeze_at:
                model.apply(tq.disable_observer)
            order = torch.randperm(len(xs), generator=gen)
            sums = {"ce": 0.0, "kd": 0.0, "total": 0.0}
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i:i + cfg.batch_size]
                logits = model(xs[idx])
                ce = (torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx])
                      if multilabel else torch.nn.functional.cross_entropy(logits, y[idx]))
                kd = kd_term(logits, t_logits[idx], cfg.temperature, multilabel)
                loss = cfg.ce_weight * ce + cfg.kd_weight * kd
                if not torch.isfinite(loss):
                    raise QuantizationError(f"QAT loss became {loss.item()} in epoch {ep + 1}",
                                            "lower the QAT learning rate")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                for k, v in (("ce", ce), ("kd", kd), ("total", loss)):
                    sums[k] += float(v) * len(idx)
            row = {"epoch": ep + 1, **{k: round(v / len(xs), 5) for k, v in sums.items()},
                   "observers_frozen": ep >= freeze_at}
            epochs.append(row)
            say(f"  qat epoch {ep + 1}/{cfg.epochs}: loss {row['total']:.4f} "
                f"(ce {row['ce']:.4f}, kd {row['kd']:.4f})")
    desc = ds.describe() if hasattr(ds, "describe") else {}
    record = {
        "library": f"torch.ao.quantization (eager prepare_qat, torch {torch.__version__})",
        "config": asdict(cfg), "epochs": epochs, "seconds": round(time.perf_counter() - t0, 1),
        "fake_quant": {"activation": types["activation"], "weight": types["weight"],
                       "weight_bits": 7 if types.get("reduce_range") else 8,
                       "weight_scheme": "per-channel symmetric", "batchnorm": "frozen statistics",
                       "preprocessing": "float (not fake-quantized)"},
        "student_checkpoint": str(plan.checkpoint), "student_sha256": sha256_file(plan.checkpoint),
        "teacher": trec,
        "data": {"path": plan.data or "synthetic", "split": "train", "n": int(len(xs)),
                 "seed": plan.seed, "split_file": str(plan.split_file) if plan.split_file else None,
                 "split_sha256": sha256_file(plan.split_file) if plan.split_file else None,
                 "views": views, "augment": False, "synthetic": bool(desc.get("synthetic"))},
    }
    return float_weights(student, model), record, ckpt


_CACHE: dict[tuple[Any, ...], tuple[bytes, dict[str, Any]]] = {}


def qat_fp32_onnx(plan: QatPlan, types: dict[str, Any], fp32_onnx: Path, out: Path,
                  say: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Fine-tune (once per process for the same plan and types) and export the fine-tuned FP32
    student with its deploy preprocessing to ``out``, with the bundle's exporter and opset.

    why the cache: ``benchmarks/quantize.py`` and a user quantizing for two backends ask for the
    same fine-tune; the QDQ model is the same for both, so training twice only costs minutes.
    """
    import onnx
    from cmkd_edge.export.onnx import build_deploy_module, export_onnx, slim
    from cmkd_edge.export.student import preprocess_spec

    if plan.missing:
        raise QuantizationError(plan.missing)
    # contents, not paths: quantize edits a staging copy of the bundle, whose split file moves
    key = (sha256_file(plan.checkpoint), plan.data, plan.seed,
           sha256_file(plan.split_file) if plan.split_file else None, plan.config,
           types.get("name"), bool(types.get("reduce_range")), sha256_file(fp32_onnx))
    if key not in _CACHE:
        import torch

        net, record, ckpt = finetune(plan, types, say)
        ref = onnx.load(str(fp32_onnx), load_external_data=False)
        opset = max(o.version for o in ref.opset_import if o.domain in ("", "ai.onnx"))
        module = build_deploy_module(net, preprocess_spec(ckpt))
        example = torch.zeros((2, len(ckpt.meta.preprocess.source_bands),
                               *[int(d.dim_value) or 32 for d in
                                 ref.graph.input[0].type.tensor_type.shape.dim[2:]]))
        record["export"] = export_onnx(module, example, out, opset)
        record["export"]["slim"] = slim(out)
        _CACHE[key] = (out.read_bytes(), record)
    else:
        say("  qat: reusing this process's fine-tune of the same student")
    data, record = _CACHE[key]
    out.write_bytes(data)
    return copy.deepcopy(record)
