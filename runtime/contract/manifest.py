"""The bundle manifest (``manifest.json``, schema_version 1) as frozen, validated dataclasses.

The schema is the one in docs/architecture.md; the runtime reads it and the export stage writes it,
so both sides share this module (stdlib only, nothing heavy at import). The specs it holds
(``InputSpec``, ``PreprocessSpec``, ``OutputSpec``) live in ``runtime.contract.specs``, the records it holds
(accuracy, gate, quantization, provenance) in ``runtime.contract.records``, and every field is read
and written by the one codec (``runtime.contract.codec``). Public API, kept small:

    Manifest, Artifact                             # frozen dataclasses; lists are tuples
    Manifest.from_dict(d) -> Manifest              # validates; BundleError names the bad field
    Manifest.to_dict() -> dict                     # JSON-ready, round-trips with from_dict
    read_manifest(path_or_bundle_dir) -> Manifest
    hash_bundle_files(bundle_dir) -> dict[str, str]          # every file but manifest.json
    write_manifest(bundle_dir, manifest) -> Manifest  # fills `files`, writes atomically

How the export stage writes a bundle::

    from cmkd_edge.runtime.contract.manifest import Artifact, Manifest, write_manifest
    from cmkd_edge.runtime.contract.specs import InputSpec, OutputSpec, PreprocessSpec
    # ... put model.onnx, model.xml/.bin, ... into bundle_dir first, then:
    m = Manifest(task="multiclass", class_names=("Forest", "River"),
                 input=InputSpec(modality="sar", band_names=("VV", "VH"), units="db",
                                 shape=(None, 2, 64, 64), expected_range=(-50.0, 10.0)),
                 output=OutputSpec(activation="softmax"),
                 preprocess=PreprocessSpec(source="s1", source_bands=("VV", "VH"),
                                           source_units="db", select=(0, 1), clip=(-50.0, 30.0),
                                           mean=(-12.0, -19.0), std=(4.0, 5.0)),
                 artifacts=(Artifact(id=ONNX_FP32, path="model.onnx", format="onnx",
                                     precision="fp32", backend="onnxruntime",
                                     files=("model.onnx",), opset=17, ir_version=8),),
                 quantization=None, provenance=Provenance(method="kd", tools={...}))
    write_manifest(bundle_dir, m)   # hashes every file, checks artifact files exist, atomic write

A later stage never edits a dict: it derives a new manifest (``m.with_artifact(a)``,
``m.without(ids)``, ``dataclasses.replace(m, quantization=...)``) and writes that.

Optional fields beyond architecture.md (all default to "absent"): ``Artifact.max_batch`` (largest
batch an artifact accepts, e.g. a TensorRT profile's max; the runtime splits bigger batches) and
``Artifact.gate_passed`` (True/False when an accuracy gate ran on this artifact). With
``precision="auto"`` the runtime ranks TensorRT candidates before CPU ones and, within those, INT8
with ``gate_passed`` true first, then FP16 on TensorRT, FP32, FP16 on a CPU backend, and INT8
without a passed gate (false or absent) last (``cmkd_edge.runtime.classifier.select_artifacts``).
``OutputSpec.thresholds`` (multi-label: per-class decision thresholds chosen on the validation
split at export, one per class in [0, 1]; ``classify`` and ``evaluate`` apply them).
Unknown keys are kept in ``extra`` so a newer writer's additions survive a read/write round trip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, ClassVar, Literal

from cmkd_edge.errors import BundleError
from cmkd_edge.fsutil import atomic_write_json, sha256_file

from ..backends import ARTIFACT_FORMATS as FORMATS  # live tables, from the backend declarations
from ..backends import BACKEND_NAMES, DEVICE_BOUND_FORMATS
from .codec import OMIT_NONE, REQUIRED, Positive, Record, check
from .records import Accuracy, ArtifactGate, Provenance, QuantRecord, TargetDevice, quant_key
from .specs import InputSpec, OutputSpec, PreprocessSpec

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
Task = Literal["multiclass", "multilabel"]
Precision = Literal["fp32", "fp16", "int8"]
TASKS = ("multiclass", "multilabel")
PRECISIONS = ("fp32", "fp16", "int8")


def check_relpath(rel: str, where: str = "path") -> str:
    """Refuse a bundle-relative path that is absolute, empty or climbs out with ``..``."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise BundleError(f"{where} {rel!r} is not a relative POSIX path inside the bundle")
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or (len(rel) > 1 and rel[1] == ":"):
        raise BundleError(f"{where} {rel!r} escapes the bundle", "bundle paths must stay inside it")
    return rel


def _choice(value: str, choices: Sequence[str], where: str) -> None:
    if value not in choices:
        raise BundleError(f"manifest field {where!r} is {value!r} (expected one of {', '.join(choices)})")


@dataclass(frozen=True)
class Artifact(Record):
    """One runnable model file set (ONNX, OpenVINO IR, TensorRT plan) of a given precision.

    ``rung`` (quantize: the ladder rung it came from) and ``gate`` (compile: its own gate run, or
    why none) are the writers' records other stages read; the rest of what writers add (parity,
    check, device, qat, profile) stays in ``extra``, read by no code.
    """

    id: str
    path: str
    format: str
    precision: Precision
    backend: str
    files: tuple[str, ...]
    opset: int | None = None
    ir_version: int | None = None
    accuracy: Accuracy | None = None
    fingerprint: dict[str, str] | None = None
    max_batch: Annotated[int, Positive] | None = None
    gate_passed: bool | None = None
    source: str | None = None  # id of the artifact this one was compiled from
    rung: str | None = field(default=None, metadata=OMIT_NONE)
    gate: ArtifactGate | None = field(default=None, metadata=OMIT_NONE)
    target: TargetDevice | None = field(default=None, metadata=OMIT_NONE)  # compile --for
    #: ONNX Runtime graph transformers this artifact runs without (its runner passes them): an INT8
    #: model with a float stem, whose max-pool QDQ propagation would move onto a slow uint8 kernel
    disabled_optimizers: tuple[str, ...] | None = field(default=None, metadata=OMIT_NONE)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str):
            raise BundleError(f"manifest field 'artifacts[].id' must be a string, got {self.id!r}")
        check(self, f"artifacts[{self.id}]")
        where = f"artifacts[{self.id}]"
        _choice(self.format, FORMATS, f"{where}.format")
        _choice(self.backend, BACKEND_NAMES, f"{where}.backend")
        check_relpath(self.path, f"{where}.path")
        for f in self.files:
            check_relpath(f, f"{where}.files")
        if self.path not in self.files:
            raise BundleError(f"manifest field '{where}.files' does not list its path {self.path!r}")
        if self.format in DEVICE_BOUND_FORMATS and not self.fingerprint:
            raise BundleError(f"manifest field '{where}.fingerprint' is missing (a {self.format} "
                              "runs only on the device it was built for)")

    @classmethod
    def _upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        """Older writers left ``files`` out when the artifact is its one file."""
        return d if "files" in d or not isinstance(d.get("path"), str) else {**d, "files": [d["path"]]}


@dataclass(frozen=True)
class Manifest(Record):
    """The whole manifest; ``files`` maps every bundle file but manifest.json to its sha256."""

    task: Task
    class_names: tuple[str, ...]
    input: InputSpec
    output: OutputSpec
    preprocess: PreprocessSpec
    artifacts: tuple[Artifact, ...]
    quantization: dict[str, QuantRecord] | None = None
    provenance: Provenance = field(default_factory=Provenance)
    files: dict[str, str] = field(default_factory=dict, metadata=REQUIRED)
    created: str = ""
    schema_version: int = field(default=SCHEMA_VERSION, metadata=REQUIRED)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    _upgrade_note: ClassVar[str] = "re-export the bundle with `cmkd-edge export`"

    def __post_init__(self) -> None:
        _check_version(self.schema_version)
        check(self)
        # the device feeds raw values: the graph must hold the preprocessing, for these bands
        if not self.preprocess.in_graph:
            raise BundleError("manifest field 'preprocess.in_graph' is false (this runtime feeds raw "
                              "sensor values and needs the preprocessing inside the model)",
                              "re-export the bundle with `cmkd-edge export`")
        if self.preprocess.source_bands != self.input.band_names:
            raise BundleError(f"manifest field 'preprocess.source_bands' "
                              f"({','.join(self.preprocess.source_bands)}) differs from "
                              f"'input.band_names' ({','.join(self.input.band_names)})")
        if not self.class_names:
            raise BundleError("manifest field 'class_names' is empty")
        if self.output.thresholds is not None and len(self.output.thresholds) != len(self.class_names):
            raise BundleError(f"manifest field 'output.thresholds' has {len(self.output.thresholds)} "
                              f"values for {len(self.class_names)} classes")
        if not self.artifacts:
            raise BundleError("manifest field 'artifacts' is empty", "the bundle has no model")
        ids = [a.id for a in self.artifacts]
        if len(set(ids)) != len(ids):
            raise BundleError(f"manifest field 'artifacts' repeats an id ({ids})")
        for rel, digest in self.files.items():
            check_relpath(rel, "files")
            if len(digest) != 64:
                raise BundleError(f"manifest field 'files[{rel}]' is not a sha256 hex digest")
        if not self.created:
            object.__setattr__(self, "created", datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @classmethod
    def _upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        """The version first: a newer schema's other fields must not produce a misleading error."""
        if "schema_version" not in d:
            raise BundleError("manifest field 'schema_version' is missing", cls._upgrade_note)
        _check_version(d["schema_version"])
        return d

    def quant(self, backend: str, precision: str) -> QuantRecord | None:
        """The quantization record of one ``quantize --backend B --precision P`` request, or None."""
        return (self.quantization or {}).get(quant_key(backend, precision))

    def gate_n(self, split: str | None) -> int | None:
        """The n of a recorded gate that scored ``split`` (older bundles' accuracies lack their n;
        every gate of a bundle scores the same recorded samples)."""
        return next((q.gate.n for q in (self.quantization or {}).values()
                     if q.gate is not None and q.gate.split == split and q.gate.n is not None), None)

    def artifact(self, artifact_id: str) -> Artifact:
        for a in self.artifacts:
            if a.id == artifact_id:
                return a
        raise BundleError(f"no artifact {artifact_id!r} in the bundle",
                          f"choose one of: {', '.join(a.id for a in self.artifacts)}")

    def find(self, artifact_id: str) -> Artifact | None:
        """The artifact ``artifact_id``, or None."""
        return next((a for a in self.artifacts if a.id == artifact_id), None)

    def without(self, ids: Sequence[str]) -> tuple[Manifest, list[str]]:
        """This manifest without the artifacts ``ids`` and everything built from them.

        Why transitively (``source``): a re-run of quantize replaces ``onnx-int8``; an OpenVINO IR or
        TensorRT plan compiled from the old QDQ model would otherwise stay, describing a model nobody
        gated. Returns (new manifest, removed ids, the requested ones first). An empty result is
        allowed here (a writer adds the replacement next); ``write_manifest`` refuses it.
        """
        gone = [i for i in ids if self.find(i) is not None]
        frontier = set(gone)
        while frontier:
            nxt = [a.id for a in self.artifacts if a.source in frontier and a.id not in gone]
            gone += nxt
            frontier = set(nxt)
        kept = tuple(a for a in self.artifacts if a.id not in gone)
        return _replace_unchecked(self, artifacts=kept), gone

    def updated(self, artifact: Artifact) -> Manifest:
        """This manifest with the same-id artifact's record replaced in place (a metadata change:
        its files and everything built from them stay)."""
        self.artifact(artifact.id)  # raises for an unknown id
        return replace(self, artifacts=tuple(artifact if a.id == artifact.id else a
                                             for a in self.artifacts))

    def with_artifact(self, artifact: Artifact) -> tuple[Manifest, list[str]]:
        """This manifest with ``artifact`` added, replacing one with the same id.

        Anything built from the replaced artifact goes too (see :meth:`without`): it was compiled
        from the old file. Returns (new manifest, ids of those dependents).
        """
        m, gone = self.without([artifact.id])
        return replace(m, artifacts=(*m.artifacts, artifact)), gone[1:]


def _check_version(version: Any) -> int:
    if not isinstance(version, int) or isinstance(version, bool) or version != SCHEMA_VERSION:
        raise BundleError(f"manifest schema_version {version!r} is not supported "
                          f"(this runtime reads {SCHEMA_VERSION})", "upgrade cmkd-edge")
    return version


def _replace_unchecked(m: Manifest, **changes: Any) -> Manifest:
    """``dataclasses.replace`` for an intermediate state a writer completes before writing (an
    artifact list emptied on the way to its replacement): skips ``__post_init__``."""
    new = object.__new__(Manifest)
    for f in fields(Manifest):
        object.__setattr__(new, f.name, changes.get(f.name, getattr(m, f.name)))
    return new


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``manifest.json`` (``path`` is the file or the bundle directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_NAME
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleError(f"no {MANIFEST_NAME} at {p.parent}", "is this a cmkd-edge bundle?") from exc
    except (OSError, ValueError) as exc:
        raise BundleError(f"{p} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{p} is not a JSON object", "is this a cmkd-edge bundle?")
    return Manifest.from_dict(data, source=p)


def hash_bundle_files(bundle_dir: str | os.PathLike[str]) -> dict[str, str]:
    """sha256 of every regular file under ``bundle_dir`` except manifest.json (POSIX relative keys).

    Raises BundleError for a symlink: a bundle must be self-contained regular files.
    """
    root = Path(bundle_dir)
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            raise BundleError(f"bundle file {rel!r} is a symlink", "copy the file into the bundle")
        if p.is_file() and rel != MANIFEST_NAME and not p.name.startswith(f".{MANIFEST_NAME}."):
            out[rel] = sha256_file(p)
    return out


def write_manifest(bundle_dir: str | os.PathLike[str], manifest: Manifest) -> Manifest:
    """Hash the bundle's files into ``files``, check every artifact file exists, write atomically.

    Returns the manifest as written (validated again: an intermediate state such as an empty
    artifact list never reaches disk). Write the model files first: the hashes cover what is on disk.
    """
    root = Path(bundle_dir)
    if not isinstance(manifest, Manifest):
        raise TypeError(f"write_manifest takes a Manifest, not {type(manifest).__name__}")
    final = Manifest.from_dict({**manifest.to_dict(), "files": hash_bundle_files(root)})
    for a in final.artifacts:
        for rel in a.files:
            if rel not in final.files:
                raise BundleError(f"artifact {a.id!r} file {rel!r} is not in {root}")
    atomic_write_json(root / MANIFEST_NAME, final.to_dict())
    return final
