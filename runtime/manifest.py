"""The bundle manifest (``manifest.json``, schema_version 1) as frozen, validated dataclasses.

The schema is the one in docs/architecture.md; the runtime reads it and the export stage writes it,
so both sides share this module (stdlib only, nothing heavy at import). Public API, kept small:

    Manifest, InputSpec, OutputSpec, PreprocessSpec, Artifact   # frozen dataclasses; lists are tuples
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
                 preprocess=PreprocessSpec(source="s1", source_bands=("VV", "VH"),
                                           source_units="db", select=(0, 1), clip=(-50.0, 30.0),
                                           mean=(-12.0, -19.0), std=(4.0, 5.0)),
                 artifacts=(Artifact(id="onnx-fp32", path="model.onnx", format="onnx",
                                     precision="fp32", backend="onnxruntime",
                                     files=("model.onnx",), opset=17, ir_version=8),),
                 quantization=None, provenance={"method": "kd", "tools": {...}})
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
from typing import Any

from cmkd_edge.errors import BundleError
from cmkd_edge.fsutil import atomic_write_json, sha256_file

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
TASKS = ("multiclass", "multilabel")
MODALITIES = ("optical", "sar")
#: Raw input units: optical reflectance x 10000, SAR backscatter in dB or linear power, and SAR
#: magnitude (amplitude) chips quantised to 8 bits (MSTAR-style JPEG/PNG chips: 0-255, neither dB
#: nor power; squaring gives a quantity proportional to power, up to the product's unknown scale).
UNITS = ("reflectance_x1e4", "db", "linear", "magnitude_u8")
#: Units that are an amplitude (dB = 20 log10) rather than a power (dB = 10 log10).
AMPLITUDE_UNITS = ("magnitude_u8",)
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
          "str?": lambda v: v is None or isinstance(v, str),
          "dict": lambda v: isinstance(v, dict), "dict?": lambda v: v is None or isinstance(v, dict)}[kind]
    if not ok(value):
        want = {"str": "a string", "int?": "an integer or null", "posint?": "a positive integer or null",
                "num?": "a number or null", "bool?": "true, false or null", "dict": "an object",
                "str?": "a string or null",
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


def _check_range(value: Any, where: str) -> None:
    if value is not None and not (isinstance(value, tuple) and len(value) == 2
                                  and all(_is_num(v) for v in value)):
        raise BundleError(f"manifest field {where!r} must be [lo, hi] or null")


def _tuple(value: Any) -> Any:
    """JSON lists become tuples (frozen, hashable); anything else is left for validation."""
    return tuple(value) if isinstance(value, list) else value


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
        _check_range(self.expected_range, "input.expected_range")
        if self.layout != "NCHW":
            raise BundleError(f"manifest field 'input.layout' is {self.layout!r} (expected NCHW)")
        if not isinstance(self.shape, tuple):
            raise BundleError("manifest field 'input.shape' must be a list")
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
        return cls(modality=_get(d, "modality", "input"),
                   band_names=_strs(_get(d, "band_names", "input"), "input.band_names"),
                   units=_get(d, "units", "input"), shape=_tuple(_get(d, "shape", "input")),
                   name=_get(d, "name", "input", "input"), dtype=_get(d, "dtype", "input", "float32"),
                   layout=_get(d, "layout", "input", "NCHW"), nodata=_get(d, "nodata", "input", None),
                   expected_range=_floats(_get(d, "expected_range", "input", None)),
                   extra=_extra(d, cls))

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


#: Raw source -> modality of the deployed input (``s2`` = Sentinel-2 optical, ``s1`` = Sentinel-1
#: radar, ``chip`` = a radar image chip without geo-referencing, e.g. MSTAR).
MODALITY_OF_SOURCE = {"s2": "optical", "s1": "sar", "chip": "sar"}
DB_FLOOR = 1e-10  # linear power floor before log10: a zero pixel must not become -inf


@dataclass(frozen=True)
class PreprocessSpec:
    """What the deployed graph does to raw sensor input before the network's first layer.

    One record from view to device: a view produces it (``View.deploy_input``), the trainer adds
    the training split's band statistics (``with_stats``) and stores ``to_dict()`` in the
    checkpoint, export bakes it into the ONNX graph and the manifest, and :meth:`apply` is the numpy
    reference every backend's graph is tested against. One meaning per name: ``source_*`` describe
    the raw input the device feeds; ``bands``/``units`` (derived) what the network sees after
    ``select`` and ``to_db``; ``clip`` lives only here (the network applies it, export reads it).

    Attributes:
        source: raw source the deployed model reads (``s2`` optical, ``s1`` radar).
        source_bands: raw input bands in file order; source_units: their units.
        select: indices into ``source_bands`` of the network's input channels, in order.
        to_db: to dB after selection: ``10 log10(max(x, DB_FLOOR))`` for power units, ``20 log10``
            for amplitude units (``magnitude_u8``), see :attr:`db_factor`.
        to_log: ``log(1 + x)`` after selection (a log scale that keeps a zero pixel finite and
            needs no floor); exclusive with ``to_db``.
        crop: ``(h, w)`` centre crop after selection (A-ConvNets' 88x88 of a 128x128 chip): the
            device feeds the whole chip, the network sees its centre; None = no crop.
        clip: ``(lo, hi)`` applied before normalisation, or None.
        mean, std: per selected band, from the training split (empty until the trainer sets them).
        in_graph: the ops are inside the model file (always, for bundles this tool writes).
        centre: after the log scale and the clip, subtract each sample's per-band spatial mean
            (per-chip radiometric normalisation: an unknown gain of an 8-bit magnitude product is
            an offset in dB, removed here). The graph then clips before centring and the network
            does not clip (``clip_in_net``). Needs a log scale (``to_db`` or ``to_log``).
    """

    source: str
    source_bands: tuple[str, ...]
    source_units: str
    select: tuple[int, ...]
    to_db: bool = False
    clip: tuple[float, float] | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    in_graph: bool = True
    to_log: bool = False
    crop: tuple[int, int] | None = None
    centre: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _typed(self.source, "preprocess.source", "str")
        if not isinstance(self.to_log, bool):
            raise BundleError("manifest field 'preprocess.to_log' must be true or false")
        if self.to_log and self.to_db:
            raise BundleError("manifest fields 'preprocess.to_db' and 'preprocess.to_log' are both "
                              "true (choose one log scale)")
        if not isinstance(self.centre, bool):
            raise BundleError("manifest field 'preprocess.centre' must be true or false")
        if self.centre and not (self.to_db or self.to_log):
            raise BundleError("manifest field 'preprocess.centre' needs a log scale "
                              "('preprocess.to_db' or 'preprocess.to_log')")
        if self.crop is not None and not (isinstance(self.crop, tuple) and len(self.crop) == 2
                                          and all(_is_int(v) and v > 0 for v in self.crop)):
            raise BundleError(f"manifest field 'preprocess.crop' must be [h, w] (positive ints) or "
                              f"null, got {self.crop!r}")
        _strs(self.source_bands, "preprocess.source_bands")
        _choice(self.source_units, UNITS, "preprocess.source_units")
        if not isinstance(self.to_db, bool) or not isinstance(self.in_graph, bool):
            raise BundleError("manifest fields 'preprocess.to_db' and 'preprocess.in_graph' must be "
                              "true or false")
        n = len(self.source_bands)
        if (not isinstance(self.select, tuple) or not self.select
                or not all(_is_int(i) and 0 <= i < n for i in self.select)):
            raise BundleError(f"manifest field 'preprocess.select' {list(self.select or ())} does not "
                              f"index 'preprocess.source_bands' ({n} bands)")
        _check_range(self.clip, "preprocess.clip")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if not isinstance(v, tuple) or not all(_is_num(x) for x in v) or (
                    v and len(v) != len(self.select)):
                raise BundleError(f"manifest field 'preprocess.{name}' must list one number per "
                                  f"selected band ({len(self.select)}), got {list(v)[:4]}")

    # -- derived: what the network sees --------------------------------------------------------
    @property
    def bands(self) -> tuple[str, ...]:
        """Names of the network's input channels (``source_bands`` picked by ``select``)."""
        return tuple(self.source_bands[i] for i in self.select)

    @property
    def units(self) -> str:
        """Units of the network's input channels (after ``to_db`` / ``to_log``)."""
        if self.to_db:
            return "db"
        return f"log1p_{self.source_units}" if self.to_log else self.source_units

    @property
    def clip_in_net(self) -> tuple[float, float] | None:
        """The clip the network applies itself (InputNorm): the spec's clip, or None when
        centring (the graph clips before subtracting the mean, so the net must not clip after)."""
        return None if self.centre else self.clip

    @property
    def db_factor(self) -> float:
        """10 for power units, 20 for amplitude units: the same dB either way."""
        return 20.0 if self.source_units in AMPLITUDE_UNITS else 10.0

    def network_hw(self, hw: Sequence[int]) -> tuple[int, int]:
        """Spatial size the network sees for a raw input of ``hw`` (after the crop).

        Raises:
            BundleError: the crop is larger than the input.
        """
        h, w = int(hw[0]), int(hw[1])
        if self.crop is None:
            return h, w
        if self.crop[0] > h or self.crop[1] > w:
            raise BundleError(f"preprocess crop {self.crop[0]}x{self.crop[1]} is larger than the "
                              f"input {h}x{w}")
        return self.crop

    @property
    def modality(self) -> str:
        return MODALITY_OF_SOURCE.get(self.source, "optical")

    @property
    def has_stats(self) -> bool:
        return bool(self.mean) and bool(self.std)

    def with_stats(self, mean: Sequence[float], std: Sequence[float]) -> PreprocessSpec:
        """This spec with the training split's per-band statistics."""
        return replace(self, mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))

    def input_spec(self, hw: Sequence[int], modality: str | None = None,
                   nodata: float | None = None) -> InputSpec:
        """The graph input this spec implies: raw source bands, their units, a dynamic batch."""
        from .units import EXPECTED_RANGE

        return InputSpec(modality=modality or self.modality, band_names=self.source_bands,
                         units=self.source_units,
                         shape=(None, len(self.source_bands), int(hw[0]), int(hw[1])),
                         nodata=nodata, expected_range=EXPECTED_RANGE.get(self.source_units))

    def apply(self, x: Any, normalise: bool = True) -> Any:
        """The numpy reference of the in-graph preprocessing.

        Args:
            x: raw sensor values (N, len(source_bands), H, W).
            normalise: also apply ``(x - mean) / std`` (the network's InputNorm).
        Returns:
            (N, len(select), H, W) float32 (``crop`` sized when a crop is set).
        """
        import numpy as np

        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != len(self.source_bands):
            raise ValueError(f"expected (N, {len(self.source_bands)}, H, W), got {x.shape}")
        y = x[:, list(self.select)]
        if self.crop is not None:
            ch, cw = self.network_hw(y.shape[-2:])
            top, left = centre_offset(y.shape[-2], ch), centre_offset(y.shape[-1], cw)
            y = y[..., top:top + ch, left:left + cw]
        y = log_scale(y, self.to_db, self.to_log, self.db_factor)
        if self.clip is not None:
            y = np.clip(y, np.float32(self.clip[0]), np.float32(self.clip[1]))
        if self.centre:
            y = centre_mean(y)
        if normalise:
            if not self.has_stats:
                raise ValueError("the preprocessing spec has no band statistics to normalise with")
            mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
            # same guard as InputNorm: a constant band (std 0) must not divide by zero
            inv_std = (1.0 / np.maximum(np.asarray(self.std, np.float32), 1e-6)).reshape(1, -1, 1, 1)
            y = (y - mean) * inv_std.astype(np.float32)
        return y.astype(np.float32, copy=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "preprocess") -> PreprocessSpec:
        """Parse a stored spec (manifest ``preprocess`` or a checkpoint's); BundleError names the
        missing or bad field."""
        return cls(source=_get(d, "source", where),
                   source_bands=_strs(_get(d, "source_bands", where), f"{where}.source_bands"),
                   source_units=_get(d, "source_units", where),
                   select=_tuple(_get(d, "select", where)), to_db=_get(d, "to_db", where, False),
                   clip=_floats(_get(d, "clip", where, None)),
                   mean=_floats(_get(d, "mean", where, [])), std=_floats(_get(d, "std", where, [])),
                   in_graph=_get(d, "in_graph", where, True),
                   to_log=_get(d, "to_log", where, False), crop=_ints(_get(d, "crop", where, None)),
                   centre=_get(d, "centre", where, False), extra=_extra(d, cls))

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


def log_scale(y: Any, to_db: bool, to_log: bool, db_factor: float = 10.0) -> Any:
    """``db_factor * log10(max(y, DB_FLOOR))`` (to_db), ``log(1 + max(y, 0))`` (to_log), or ``y``.

    One definition for the numpy reference and the data layer's chip views, so a view's training
    values and the deployed graph's agree to the last bit the float32 ops allow.
    """
    import numpy as np

    if to_db:
        return np.float32(db_factor) * np.log10(np.maximum(y, np.float32(DB_FLOOR)))
    if to_log:
        return np.log1p(np.maximum(y, np.float32(0.0)))
    return y


def centre_mean(y: Any) -> Any:
    """``y`` minus each sample's per-band spatial mean (the last two axes), in float32.

    One definition for ``PreprocessSpec.apply`` (``centre``) and the chip views' ``norm=mean``, as
    :func:`log_scale` is for the log scales.
    """
    import numpy as np

    return y - y.mean(axis=(-2, -1), keepdims=True, dtype=np.float32)


def centre_offset(size: int, crop: int) -> int:
    """Start of a centred window of ``crop`` in ``size`` (the extra pixel of an odd margin goes to
    the end): the one definition the numpy reference, the ONNX graph and the data layer share."""
    return (int(size) - int(crop)) // 2


def _ints(value: Any) -> Any:
    value = _tuple(value)
    return tuple(int(v) for v in value) if isinstance(value, tuple) and all(
        _is_int(v) for v in value) else value


def _floats(value: Any) -> Any:
    value = _tuple(value)
    return tuple(float(v) for v in value) if isinstance(value, tuple) and all(
        _is_num(v) for v in value) else value


@dataclass(frozen=True)
class OutputSpec:
    """The model's output: logits, turned into probabilities by ``activation``."""

    name: str = "logits"
    activation: str = "softmax"
    #: multi-label only: per-class decision thresholds on the sigmoid probabilities, one per class,
    #: chosen on the validation split at export (how: ``provenance.thresholds``); None = 0.5 each
    thresholds: tuple[float, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _choice(self.activation, ACTIVATIONS, "output.activation")
        _typed(self.name, "output.name", "str")
        if self.thresholds is not None and not (
                isinstance(self.thresholds, tuple) and self.thresholds
                and all(_is_num(t) and 0.0 <= t <= 1.0 for t in self.thresholds)):
            raise BundleError("manifest field 'output.thresholds' must be a list of numbers in "
                              "[0, 1] (one per class) or null")
        if self.thresholds is not None and self.activation != "sigmoid":
            raise BundleError("manifest field 'output.thresholds' is only for multi-label "
                              "(sigmoid) outputs")

    def threshold_array(self, k: int) -> Any:
        """The (K,) thresholds as float32 (0.5 each when none are recorded)."""
        import numpy as np

        return np.asarray(self.thresholds if self.thresholds is not None else [0.5] * k, np.float32)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OutputSpec:
        return cls(name=_get(d, "name", "output", "logits"),
                   activation=_get(d, "activation", "output"),
                   thresholds=_floats(_get(d, "thresholds", "output", None)), extra=_extra(d, cls))


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
    source: str | None = None  # id of the artifact this one was compiled from
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _typed(self.id, "artifacts[].id", "str")
        where = f"artifacts[{self.id}]"
        _strs(self.files, f"{where}.files")
        for f, kind in (("opset", "int?"), ("ir_version", "int?"), ("max_batch", "posint?"),
                        ("gate_passed", "bool?"), ("accuracy", "dict?"), ("fingerprint", "dict?"),
                        ("source", "str?")):
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
                   gate_passed=_get(d, "gate_passed", where, None),
                   source=_get(d, "source", where, None), extra=_extra(d, cls))

    def to_dict(self) -> dict[str, Any]:
        """The JSON entry, as manifest.json holds it."""
        return _plain(self)


@dataclass(frozen=True)
class Manifest:
    """The whole manifest; ``files`` maps every bundle file but manifest.json to its sha256."""

    task: str
    class_names: tuple[str, ...]
    input: InputSpec
    output: OutputSpec
    preprocess: PreprocessSpec
    artifacts: tuple[Artifact, ...]
    quantization: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _check_version(self.schema_version)
        _choice(self.task, TASKS, "task")
        _strs(self.class_names, "class_names")
        if not isinstance(self.preprocess, PreprocessSpec):
            raise BundleError("manifest field 'preprocess' must be a preprocessing spec object")
        # the device feeds raw values: the graph must hold the preprocessing, for these bands
        if not self.preprocess.in_graph:
            raise BundleError("manifest field 'preprocess.in_graph' is false (this runtime feeds raw "
                              "sensor values and needs the preprocessing inside the model)",
                              "re-export the bundle with `cmkd-edge export`")
        if self.preprocess.source_bands != self.input.band_names:
            raise BundleError(f"manifest field 'preprocess.source_bands' "
                              f"({','.join(self.preprocess.source_bands)}) differs from "
                              f"'input.band_names' ({','.join(self.input.band_names)})")
        _typed(self.quantization, "quantization", "dict?")
        _typed(self.provenance, "provenance", "dict")
        _typed(self.created, "created", "str")
        if not isinstance(self.files, dict):
            raise BundleError("manifest field 'files' must be an object")
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        """Validate a parsed manifest.json; every problem is a BundleError naming the field."""
        if not isinstance(d, dict):
            raise BundleError("manifest.json is not a JSON object")
        # the version first: a newer schema's other fields must not produce a misleading error
        version = _check_version(_get(d, "schema_version", ""))
        arts = _get(d, "artifacts", "")
        if not isinstance(arts, list):
            raise BundleError("manifest field 'artifacts' must be a list")
        files = _get(d, "files", "")
        return cls(task=_get(d, "task", ""),
                   class_names=_strs(_get(d, "class_names", ""), "class_names"),
                   input=InputSpec.from_dict(_get(d, "input", "")),
                   output=OutputSpec.from_dict(_get(d, "output", "")),
                   preprocess=PreprocessSpec.from_dict(_get(d, "preprocess", "")),
                   artifacts=tuple(Artifact.from_dict(a, i) for i, a in enumerate(arts)),
                   quantization=_get(d, "quantization", "", None),
                   provenance=_get(d, "provenance", "", {}), files=files,
                   created=_get(d, "created", "", ""), schema_version=version,
                   extra=_extra(d, cls))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``Manifest.from_dict(m.to_dict()) == m``."""
        return _plain(self)


def _check_version(version: Any) -> int:
    if not _is_int(version) or version != SCHEMA_VERSION:
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

    Returns the manifest as written (validated again: an intermediate state such as an empty
    artifact list never reaches disk). Write the model files first: the hashes cover what is on disk.
    """
    root = Path(bundle_dir)
    d = manifest.to_dict() if isinstance(manifest, Manifest) else dict(manifest)
    d["files"] = hash_bundle_files(root)
    final = Manifest.from_dict(d)
    for a in final.artifacts:
        for rel in a.files:
            if rel not in final.files:
                raise BundleError(f"artifact {a.id!r} file {rel!r} is not in {root}")
    atomic_write_json(root / MANIFEST_NAME, final.to_dict())
    return final
