"""The bundle manifest (``manifest.json``, schema_version 1) as frozen, validated dataclasses.

The schema is the one in docs/architecture.md; the runtime reads it and the export stage writes it,
so both sides share this module (stdlib only, nothing heavy at import). Public API, kept small:

    Manifest, InputSpec, OutputSpec, Artifact      # frozen dataclasses; lists are tuples
    Manifest.from_dict(d) -> Manifest              # validates; BundleError names the bad field
    Manifest.to_dict() -> dict                     # JSON-ready, round-trips with from_dict
    read_manifest(path_or_bundle_dir) -> Manifest
    hash_bundle_files(bundle_dir) -> dict[str, str]          # every file but manifest.json
    write_manifest(bundle_dir, manifest_or_dict) -> Manifest  # fills `files`, writes atomically

How the export stage writes a bundle::

    from cmkd_edge.runtime.manifest import Artifact, InputSpec, Manifest, OutputSpec, write_manifest
    # ... put model.onnx, model.xml/.bin, ... into bundle_dir first, then:
    m = Manifest(task="multiclass", class_names=("Forest", "River"),
                 input=InputSpec(modality="sar", band_names=("VV", "VH"), units="db",
                                 shape=(None, 2, 64, 64), expected_range=(-50.0, 10.0)),
                 output=OutputSpec(activation="softmax"),
                 preprocess={..., "in_graph": True},
                 artifacts=(Artifact(id="onnx-fp32", path="model.onnx", format="onnx",
                                     precision="fp32", backend="onnxruntime",
                                     files=("model.onnx",), opset=17, ir_version=8),),
                 quantization=None, provenance={"method": "kd", "tools": {...}})
    write_manifest(bundle_dir, m)   # hashes every file, checks artifact files exist, atomic write

Optional fields beyond architecture.md (all default to "absent"): ``Artifact.max_batch`` (largest
batch an artifact accepts, e.g. a TensorRT profile's max; the runtime splits bigger batches) and
``Artifact.gate_passed`` (True/False when an accuracy gate ran on this artifact). With
``precision="auto"`` the runtime ranks TensorRT candidates before CPU ones and, within those, INT8
with ``gate_passed`` true first, then FP16 on TensorRT, FP32, FP16 on a CPU backend, and INT8
without a passed gate (false or absent) last (``cmkd_edge.runtime.classifier.select_artifacts``).
Unknown keys are kept in ``extra`` so a newer writer's additions survive a read/write round trip.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from cmkd_edge.errors import BundleError
from cmkd_edge.fsutil import atomic_write_json, sha256_file

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
TASKS = ("multiclass", "multilabel")
MODALITIES = ("optical", "sar")
UNITS = ("reflectance_x1e4", "db", "linear")
ACTIVATIONS = ("softmax", "sigmoid")
from .backends import ARTIFACT_FORMATS as FORMATS, BACKEND_NAMES  # noqa: E402, I001  (live, from backend declarations)
PRECISIONS = ("fp32", "fp16", "int8")
_MISSING = object()


def _get(d: dict[str, Any], key: str, where: str, default: Any = _MISSING) -> Any:
    if not isinstance(d, dict):
        raise BundleError(f"manifest field {where!r} must be an object, got {type(d).__name__}")
    if key not in d:
        if default is _MISSING:
            raise BundleError(f"manifest field '{where}.{key}' is missing".replace("'.", "'"),
                              "re-export the bundle with `cmkd-edge export`")
        return default
    return d[key]


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise BundleError(f"manifest field {where!r} is {value!r} (expected one of {', '.join(choices)})")
    return value


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise BundleError(f"manifest field {where!r} must be a list of strings")
    return tuple(value)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _typed(value: Any, where: str, kind: str) -> None:
    """Refuse a field of the wrong JSON type (so no TypeError/ValueError escapes later)."""
    ok = {"str": lambda v: isinstance(v, str), "int?": lambda v: v is None or _is_int(v),
          "posint?": lambda v: v is None or (_is_int(v) and v > 0),
          "num?": lambda v: v is None or _is_num(v), "bool?": lambda v: v is None or isinstance(v, bool),
          "dict": lambda v: isinstance(v, dict), "dict?": lambda v: v is None or isinstance(v, dict)}[kind]
    if not ok(value):
        want = {"str": "a string", "int?": "an integer or null", "posint?": "a positive integer or null",
                "num?": "a number or null", "bool?": "true, false or null", "dict": "an object",
                "dict?": "an object or null"}[kind]
        raise BundleError(f"manifest field {where!r} must be {want}, got {json.dumps(value)[:40]}")


def check_relpath(rel: str, where: str = "path") -> str:
    """Refuse a bundle-relative path that is absolute, empty or climbs out with ``..``."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise BundleError(f"{where} {rel!r} is not a relative POSIX path inside the bundle")
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or (len(rel) > 1 and rel[1] == ":"):
        raise BundleError(f"{where} {rel!r} escapes the bundle", "bundle paths must stay inside it")
    return rel


def _extra(d: dict[str, Any], cls: type) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k not in known}


@dataclass(frozen=True)
class InputSpec:
    """What the model's input tensor holds: raw sensor values, bands in file order."""

    modality: str
    band_names: tuple[str, ...]
    units: str
    shape: tuple[int | None, ...]
    name: str = "input"
    dtype: str = "float32"
    layout: str = "NCHW"
    nodata: float | None = None
    expected_range: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _choice(self.modality, MODALITIES, "input.modality")
        _choice(self.units, UNITS, "input.units")
        _strs(self.band_names, "input.band_names")
        for f in ("name", "dtype", "layout"):
            _typed(getattr(self, f), f"input.{f}", "str")
        _typed(self.nodata, "input.nodata", "num?")
        if self.expected_range is not None and not (
                len(self.expected_range) == 2 and all(_is_num(v) for v in self.expected_range)):
            raise BundleError("manifest field 'input.expected_range' must be [lo, hi] or null")
        if self.layout != "NCHW":
            raise BundleError(f"manifest field 'input.layout' is {self.layout!r} (expected NCHW)")
        if len(self.shape) != 4 or not all(d is None or (_is_int(d) and d > 0) for d in self.shape):
            raise BundleError(f"manifest field 'input.shape' is {list(self.shape)} "
                              "(expected [null|N, C, H, W] with positive ints)")
        if self.shape[1] is not None and self.shape[1] != len(self.band_names):
            raise BundleError(f"manifest field 'input.shape' has {self.shape[1]} channels but "
                              f"'input.band_names' lists {len(self.band_names)}")

    @property
    def channels(self) -> int:
        return len(self.band_names)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        rng = _get(d, "expected_range", "input", None)
        if rng is not None and (not isinstance(rng, (list, tuple)) or len(rng) != 2
                                or not all(_is_num(v) for v in rng)):
            raise BundleError("manifest field 'input.expected_range' must be [lo, hi] or null")
        shape = _get(d, "shape", "input")
        if not isinstance(shape, (list, tuple)):
            raise BundleError("manifest field 'input.shape' must be a list")
        return cls(modality=_get(d, "modality", "input"),
                   band_names=_strs(_get(d, "band_names", "input"), "input.band_names"),
                   units=_get(d, "units", "input"), shape=tuple(shape),
                   name=_get(d, "name", "input", "input"), dtype=_get(d, "dtype", "input", "float32"),
                   layout=_get(d, "layout", "input", "NCHW"), nodata=_get(d, "nodata", "input", None),
                   expected_range=None if rng is None else (float(rng[0]), float(rng[1])),
                   extra=_extra(d, cls))


@dataclass(frozen=True)
class OutputSpec:
    """The model's output: logits, turned into probabilities by ``activation``."""

    name: str = "logits"
    activation: str = "softmax"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _choice(self.activation, ACTIVATIONS, "output.activation")
        _typed(self.name, "output.name", "str")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OutputSpec:
        return cls(name=_get(d, "name", "output", "logits"),
                   activation=_get(d, "activation", "output"), extra=_extra(d, cls))


@dataclass(frozen=True)
class Artifact:
    """One runnable model file set (ONNX, OpenVINO IR, TensorRT plan) of a given precision."""

    id: str
    path: str
    format: str
    precision: str
    backend: str
    files: tuple[str, ...]
    opset: int | None = None
    ir_version: int | None = None
    accuracy: dict[str, Any] | None = None
    fingerprint: dict[str, str] | None = None
    max_batch: int | None = None
    gate_passed: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _typed(self.id, "artifacts[].id", "str")
        where = f"artifacts[{self.id}]"
        _strs(self.files, f"{where}.files")
        for f, kind in (("opset", "int?"), ("ir_version", "int?"), ("max_batch", "posint?"),
                        ("gate_passed", "bool?"), ("accuracy", "dict?"), ("fingerprint", "dict?")):
            _typed(getattr(self, f), f"{where}.{f}", kind)
        _choice(self.format, FORMATS, f"{where}.format")
        _choice(self.precision, PRECISIONS, f"{where}.precision")
        _choice(self.backend, BACKEND_NAMES, f"{where}.backend")
        check_relpath(self.path, f"{where}.path")
        for f in self.files:
            check_relpath(f, f"{where}.files")
        if self.path not in self.files:
            raise BundleError(f"manifest field '{where}.files' does not list its path {self.path!r}")
        if self.format == "tensorrt-plan" and not self.fingerprint:
            raise BundleError(f"manifest field '{where}.fingerprint' is missing (TensorRT plan)")

    @classmethod
    def from_dict(cls, d: dict[str, Any], index: int = 0) -> Artifact:
        where = f"artifacts[{index}]"
        path = _get(d, "path", where)
        return cls(id=_get(d, "id", where), path=path, format=_get(d, "format", where),
                   precision=_get(d, "precision", where), backend=_get(d, "backend", where),
                   files=_strs(_get(d, "files", where, [path]), f"{where}.files"),
                   opset=_get(d, "opset", where, None), ir_version=_get(d, "ir_version", where, None),
                   accuracy=_get(d, "accuracy", where, None),
                   fingerprint=_get(d, "fingerprint", where, None),
                   max_batch=_get(d, "max_batch", where, None),
                   gate_passed=_get(d, "gate_passed", where, None), extra=_extra(d, cls))


@dataclass(frozen=True)
class Manifest:
    """The whole manifest; ``files`` maps every bundle file but manifest.json to its sha256."""

    task: str
    class_names: tuple[str, ...]
    input: InputSpec
    output: OutputSpec
    preprocess: dict[str, Any]
    artifacts: tuple[Artifact, ...]
    quantization: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not _is_int(self.schema_version) or self.schema_version != SCHEMA_VERSION:
            raise BundleError(f"manifest schema_version {self.schema_version!r} is not supported "
                              f"(this runtime reads {SCHEMA_VERSION})", "upgrade cmkd-edge")
        _choice(self.task, TASKS, "task")
        _strs(self.class_names, "class_names")
        _typed(self.preprocess, "preprocess", "dict")
        _typed(self.quantization, "quantization", "dict?")
        _typed(self.provenance, "provenance", "dict")
        _typed(self.created, "created", "str")
        if not isinstance(self.files, dict):
            raise BundleError("manifest field 'files' must be an object")
        if not self.class_names:
            raise BundleError("manifest field 'class_names' is empty")
        if not self.artifacts:
            raise BundleError("manifest field 'artifacts' is empty", "the bundle has no model")
        ids = [a.id for a in self.artifacts]
        if len(set(ids)) != len(ids):
            raise BundleError(f"manifest field 'artifacts' repeats an id ({ids})")
        for rel, digest in self.files.items():
            check_relpath(rel, "files")
            if not (isinstance(digest, str) and len(digest) == 64):
                raise BundleError(f"manifest field 'files[{rel}]' is not a sha256 hex digest")
        if not self.created:
            object.__setattr__(self, "created", datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def artifact(self, artifact_id: str) -> Artifact:
        for a in self.artifacts:
            if a.id == artifact_id:
                return a
        raise BundleError(f"no artifact {artifact_id!r} in the bundle",
                          f"choose one of: {', '.join(a.id for a in self.artifacts)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        """Validate a parsed manifest.json; every problem is a BundleError naming the field."""
        if not isinstance(d, dict):
            raise BundleError("manifest.json is not a JSON object")
        version = _get(d, "schema_version", "")
        if not _is_int(version) or version != SCHEMA_VERSION:
            raise BundleError(f"manifest schema_version {version!r} is not supported "
                              f"(this runtime reads {SCHEMA_VERSION})", "upgrade cmkd-edge")
        arts = _get(d, "artifacts", "")
        if not isinstance(arts, list):
            raise BundleError("manifest field 'artifacts' must be a list")
        files = _get(d, "files", "")
        if not isinstance(files, dict):
            raise BundleError("manifest field 'files' must be an object")
        return cls(task=_get(d, "task", ""),
                   class_names=_strs(_get(d, "class_names", ""), "class_names"),
                   input=InputSpec.from_dict(_get(d, "input", "")),
                   output=OutputSpec.from_dict(_get(d, "output", "")),
                   preprocess=_get(d, "preprocess", ""),
                   artifacts=tuple(Artifact.from_dict(a, i) for i, a in enumerate(arts)),
                   quantization=_get(d, "quantization", "", None),
                   provenance=_get(d, "provenance", "", {}), files=dict(files),
                   created=_get(d, "created", "", ""), schema_version=version,
                   extra=_extra(d, cls))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``Manifest.from_dict(m.to_dict()) == m``."""
        return _plain(self)


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        out: dict[str, Any] = {}
        if isinstance(obj, Manifest):
            out["schema_version"] = obj.schema_version
        for f in fields(obj):
            if f.name in ("extra", "schema_version"):
                continue
            out[f.name] = _plain(getattr(obj, f.name))
        out.update(obj.extra)
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


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
    return Manifest.from_dict(data)


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


def write_manifest(bundle_dir: str | os.PathLike[str], manifest: Manifest | dict[str, Any]) -> Manifest:
    """Hash the bundle's files into ``files``, check every artifact file exists, write atomically.

    Returns the manifest as written. Write the model files first: the hashes cover what is on disk.
    """
    root = Path(bundle_dir)
    m = manifest if isinstance(manifest, Manifest) else Manifest.from_dict(
        {**manifest, "files": manifest.get("files", {})})
    files = hash_bundle_files(root)
    for a in m.artifacts:
        for rel in a.files:
            if rel not in files:
                raise BundleError(f"artifact {a.id!r} file {rel!r} is not in {root}")
    d = m.to_dict()
    d["files"] = files
    final = Manifest.from_dict(d)
    atomic_write_json(root / MANIFEST_NAME, final.to_dict())
    return final
