"""The typed records that cross a stage boundary, besides the manifest and its specs.

Each is a frozen dataclass read and written by the one codec (``contract.codec``): checkpoint
metadata (trainer -> evaluate, distill, export, QAT), the quantization record with its gate and
rungs (quantize -> describe, evaluate, profile, compile's re-gate), an artifact's accuracy and
gate records, the bundle's provenance, and the artifact ids stages name each other's outputs by.
Stdlib only. Every field a file written before these records existed may lack has a default, so
older checkpoints and schema-1 manifests decode (tests/records/stored holds one of each).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from cmkd_edge.errors import CheckpointError

from .codec import OMIT_NONE, Record
from .specs import PreprocessSpec


# -- artifact ids -----------------------------------------------------------------------------------
def artifact_id(prefix: str, precision: str) -> str:
    """``<prefix>-<precision>``: how every stage names the artifact a backend's step writes
    (``onnx-int8``, ``openvino-ir-fp16``, ``tensorrt-fp16``)."""
    return f"{prefix}-{precision}"


ONNX_PREFIX = "onnx"
ONNX_FP32 = artifact_id(ONNX_PREFIX, "fp32")  # the exported model every other artifact comes from


def onnx_id(precision: str) -> str:
    """The id of the bundle's ONNX model at ``precision`` (export writes fp32, quantize the rest)."""
    return artifact_id(ONNX_PREFIX, precision)


def quant_key(backend: str, precision: str) -> str:
    """The key of a quantization record in ``Manifest.quantization``."""
    return f"{backend}:{precision}"


# -- an artifact's measurements -------------------------------------------------------------------
@dataclass(frozen=True)
class Accuracy(Record):
    """An artifact's score as the stage that measured it recorded it (the gate's split and n).

    ``top1`` (multi-class, percent) or ``micro_f1`` (multi-label) holds the score; ``fp32``,
    ``drop`` and ``drop_interval`` are the gate's comparison with FP32 on the same inputs.
    """

    __omit_none__: ClassVar[bool] = True
    METRICS: ClassVar[tuple[str, ...]] = ("top1", "micro_f1")

    top1: float | None = None
    micro_f1: float | None = None
    split: str | None = None
    n: int | None = None
    backend: str | None = None
    fp32: float | None = None
    drop: float | None = None
    drop_interval: tuple[float, float] | None = None
    resolved: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def scored(cls, task: str, score: float, **kw: Any) -> Accuracy:
        """The record for ``score`` under the task's metric (top-1, or micro-F1 multi-label)."""
        return cls(**{metric_of(task): score}, **kw)

    @property
    def metric(self) -> str | None:
        """The metric name the score is recorded under (older files: also accuracy or map)."""
        for key in self.METRICS:
            if getattr(self, key) is not None:
                return key
        return next((k for k in ("accuracy", "map") if isinstance(self.extra.get(k), (int, float))), None)

    @property
    def score(self) -> float | None:
        key = self.metric
        return None if key is None else (getattr(self, key, None) if key in self.METRICS else self.extra[key])


def metric_of(task: str) -> str:
    """The gate's and the accuracy record's metric for a task."""
    return "top1" if task == "multiclass" else "micro_f1"


@dataclass(frozen=True)
class ArtifactGate(Record):
    """A compiled artifact's own gate run (``compile``'s re-gate), or why it was not run."""

    __omit_none__: ClassVar[bool] = True

    evaluated: bool
    why: str | None = None
    n: int | None = None
    sha256: str | None = None
    passed: bool | None = None
    worst_class: str | None = None
    worst_class_drop: float | None = None
    agreement_with_fp32: float | None = None
    decided_by: str | None = None
    resolved: bool | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


# -- the quantization record ------------------------------------------------------------------------
@dataclass(frozen=True)
class GateRecord(Record):
    """The accuracy gate's settings and data, as one quantize run used them."""

    metric: str | None = None
    max_drop: float | None = None
    max_class_drop: float | None = None
    confidence: float | None = None
    split: str | None = None
    n: int | None = None
    fp32_top1: float | None = None
    fp32_score: float | None = None
    thresholds: tuple[float, ...] | None = field(default=None)
    sha256: str | None = None
    seed: int | None = None
    sample_seed: int | None = None
    split_table: str | None = None
    resolution: dict[str, Any] | None = None
    data: str | None = None
    synthetic: bool | None = None
    agreement_data: dict[str, Any] | None = None
    resolved: bool | None = None
    unresolved_note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Rung(Record):
    """One rung of the fallback ladder: what was built (``rung``, ``precision`` and the builder's
    settings) and the gate's verdict on it (score, drop, interval, who decided and why)."""

    __omit_none__: ClassVar[bool] = True

    rung: str
    precision: Literal["fp32", "fp16", "int8"]
    metric: str | None = None
    score: float | None = None
    fp32_score: float | None = None
    n: int | None = None
    split: str | None = None
    drop: float | None = None
    drop_lo: float | None = None
    drop_hi: float | None = None
    worst_class: str | None = None
    worst_class_drop: float | None = None
    agreement_with_fp32: float | None = None
    decided_by: str | None = None
    resolved: bool | None = None
    passed: bool | None = None
    reason: str | None = None
    error: str | None = None
    qat: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Removed(Record):
    """An artifact a quantize run took out of the bundle, and why in words."""

    id: str
    why: str
    gate_passed: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TargetDevice(Record):
    """The device class an artifact was quantized or compiled for (``--for``; see device_profiles)."""

    __omit_none__: ClassVar[bool] = True

    profile: str
    machine: str
    features: tuple[str, ...] = ()
    source: str = "builtin"
    cpu_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class QuantRecord(Record):
    """``Manifest.quantization["<backend>:<precision>"]``: one quantize request and its outcome."""

    backend: str | None = None
    requested_precision: str | None = None
    method: str | None = None
    calibration: dict[str, Any] | None = field(default=None)
    gate: GateRecord | None = None
    qat_not_offered: str | None = field(default=None)
    rungs: tuple[Rung, ...] = ()
    accepted: str | None = None
    accepted_precision: str | None = None
    passed: bool | None = None
    ended_lower: bool | None = None
    outcome: str | None = None
    replaced: tuple[Removed, ...] = ()
    target: TargetDevice | None = field(default=None, metadata=OMIT_NONE)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


# -- provenance -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelsSeen(Record):
    """How many labels a model saw in training (kept in checkpoints and bundle provenance).

    Attributes:
        source: ``all`` (every training sample labelled), ``fraction`` (``--labelled-fraction``),
            ``ids`` (``--labelled-ids``: another run's draw),
            ``data`` (the data holds unlabelled samples).
        n_train: training samples (labelled and not).
        n_labelled: of those, how many carried a label the model saw.
        n_unlabelled: how many did not; ``used_unlabelled`` says whether they took part (only through
            a teacher).
        fraction, label_seed: the experiment's settings (None unless ``source == "fraction"``).
        per_class: labelled samples per class (multi-label: per stratum class).
        ids_file, ids_sha256: the run's labelled.csv (None when every sample is labelled).
    """

    _what: ClassVar[str] = "checkpoint"
    _error: ClassVar[type[CheckpointError]] = CheckpointError

    source: Literal["all", "fraction", "ids", "data"]
    n_train: int
    n_labelled: int
    n_unlabelled: int = 0
    used_unlabelled: bool = False
    per_class: tuple[int, ...] = ()
    fraction: float | None = None
    label_seed: int | None = None
    ids_file: str | None = None
    ids_sha256: str | None = None
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def summary(self) -> str:
        """One line for logs and reports, e.g. ``124 of 2472 training labels (5 %, seed 0)``."""
        if self.source == "all":
            return f"all {self.n_train} training labels"
        how = {"fraction": f"{self.fraction or 0:.0%}, label seed {self.label_seed}",
               "ids": f"the ids of {self.ids_file}"}.get(self.source, "the data's unlabelled samples")
        use = "used through the teacher" if self.used_unlabelled else "not used"
        return (f"{self.n_labelled} of {self.n_train} training labels ({how}); "
                f"{self.n_unlabelled} unlabelled {use}")


@dataclass(frozen=True)
class DataProvenance(Record):
    """The training data a bundle's student saw, and the split table copied into the bundle."""

    __omit_none__: ClassVar[bool] = True

    path: str | None = field(default=None, metadata={"keep_none": True})
    seed: int | None = None
    layout: str | None = None
    split_origin: str | None = None
    split_file: str | None = field(default=None, metadata={"keep_none": True})
    split_source: str | None = field(default=None, metadata={"keep_none": True})
    split_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Parity(Record):
    """Export's comparison of the ONNX graph with torch on the same raw samples."""

    __omit_none__: ClassVar[bool] = True

    max_abs_diff: float | None = None
    top1_identical: bool | None = None
    cases: int | None = None
    batches: tuple[int, ...] | None = None
    atol: float | None = None
    samples_from: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ExportRecord(Record):
    """How export wrote the graph: exporter, written versions, checks, slimming, parity."""

    __omit_none__: ClassVar[bool] = True

    exporter: str | None = None
    opset: int | None = None
    ir_version: int | None = None
    slim: dict[str, Any] | None = None
    parity: Parity | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ModelCard(Record):
    """What a reader of a bundle asks about its model that the rest of provenance does not say:
    the network (arch, width options), its size and cost, its teacher, the method's options and the
    commands that made it (written by export from the checkpoint; ``cmkd-edge report`` prints it).

    ``params``: weights in the exported FP32 graph; ``macs``: multiply-accumulates of one input
    through its Conv/Gemm/MatMul nodes (preprocessing ops are not counted), both from the ONNX file.
    """

    __omit_none__: ClassVar[bool] = True

    model: ModelConfig | None = None
    params: int | None = None
    macs: int | None = None
    teacher: TeacherRef | None = None
    method_options: dict[str, Any] | None = None
    train_command: str | None = None
    export_command: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Provenance(Record):
    """Where a bundle's model came from: checkpoints, method, view, tools, data, export checks."""

    student_checkpoint_sha256: str | None = None
    teacher_checkpoint_sha256: str | None = field(default=None)
    method: str | None = None
    arch: str | None = None
    view: str | None = None
    view_synthetic: bool | None = None
    role: str | None = None
    checkpoint_metrics: dict[str, Any] | None = None
    labels: LabelsSeen | None = field(default=None, metadata=OMIT_NONE)
    pairing: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    tools: dict[str, str | None] | None = None
    data: DataProvenance | None = None
    export: ExportRecord | None = None
    thresholds: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    card: ModelCard | None = field(default=None, metadata=OMIT_NONE)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


# -- checkpoint metadata ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig(Record):
    """Enough to rebuild a network: ``build_model(arch, in_channels, num_classes, **kwargs)``."""

    _what: ClassVar[str] = "checkpoint"
    _error: ClassVar[type[CheckpointError]] = CheckpointError

    arch: str
    in_channels: int
    num_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ViewInfo(Record):
    """What a checkpoint's view yields: modality, channel names, units, synthetic or not."""

    _what: ClassVar[str] = "checkpoint"
    _error: ClassVar[type[CheckpointError]] = CheckpointError

    modality: str | None = None
    band_names: tuple[str, ...] | None = None
    units: str | None = None
    synthetic: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TeacherRef(Record):
    """The teacher a student was distilled from: its file, hash, arch and view."""

    _what: ClassVar[str] = "checkpoint"
    _error: ClassVar[type[CheckpointError]] = CheckpointError

    path: str | None = None
    sha256: str | None = None
    arch: str | None = None
    view: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class CheckpointMeta(Record):
    """Everything a training checkpoint says besides its tensors (``state_dict``, ``train_state``).

    Written by the trainer, read by evaluate, distill (a teacher), export and QAT through
    ``cmkd_edge.checkpoint``; the preprocessing is a real :class:`PreprocessSpec`.
    """

    _what: ClassVar[str] = "checkpoint"
    _error: ClassVar[type[CheckpointError]] = CheckpointError
    FORMAT: ClassVar[str] = "cmkd-edge/checkpoint"
    VERSION: ClassVar[int] = 1

    model: ModelConfig
    task: Literal["multiclass", "multilabel"]
    class_names: tuple[str, ...]
    view: str
    preprocess: PreprocessSpec
    format: str = "cmkd-edge/checkpoint"
    version: int = 1
    role: str | None = None
    views: tuple[str, ...] = ()
    view_info: ViewInfo = field(default_factory=ViewInfo)
    input_hw: tuple[int, int] | None = None
    method: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    teacher: TeacherRef | None = None
    seed: int = 0
    command: str | None = None
    epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    labels: LabelsSeen | None = field(default=None, metadata=OMIT_NONE)
    pairing: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def data_path(self) -> str | None:
        """The training data's path as the run recorded it (None = the synthetic default)."""
        path = self.data.get("path") if isinstance(self.data, dict) else None
        return path if path is not None else self.config.get("data")
