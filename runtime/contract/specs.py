"""The typed deploy contract's input, preprocessing and output specs (frozen, validated dataclasses).

``PreprocessSpec`` travels from view to device (view -> trainer -> checkpoint -> export graph ->
manifest -> runtime); ``InputSpec``/``OutputSpec`` describe the model's tensors. The manifest
(``runtime.contract.manifest``) holds one of each; stdlib and numpy (lazily) only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, get_args

from cmkd_edge.errors import BundleError

from .codec import OMIT_NONE, REQUIRED, Record, check

Modality = Literal["optical", "sar"]
#: Raw input units: optical reflectance x 10000, SAR backscatter in dB or linear power, and SAR
#: magnitude (amplitude) chips quantised to 8 bits (MSTAR-style JPEG/PNG chips: 0-255, neither dB
#: nor power; squaring gives a quantity proportional to power, up to the product's unknown scale).
Units = Literal["reflectance_x1e4", "db", "linear", "magnitude_u8"]
Activation = Literal["softmax", "sigmoid"]
MODALITIES: tuple[str, ...] = get_args(Modality)
UNITS: tuple[str, ...] = get_args(Units)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
#: Units that are an amplitude (dB = 20 log10) rather than a power (dB = 10 log10).
AMPLITUDE_UNITS = ("magnitude_u8",)


@dataclass(frozen=True)
class InputSpec(Record):
    """What the model's input tensor holds: raw sensor values, bands in file order."""

    _where: ClassVar[str] = "input"

    modality: Modality
    band_names: tuple[str, ...]
    units: Units
    shape: tuple[int | None, ...]
    name: str = "input"
    dtype: str = "float32"
    layout: str = "NCHW"
    nodata: float | None = None
    expected_range: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check(self)
        if self.layout != "NCHW":
            raise BundleError(f"manifest field 'input.layout' is {self.layout!r} (expected NCHW)")
        if len(self.shape) != 4 or not all(d is None or d > 0 for d in self.shape):
            raise BundleError(f"manifest field 'input.shape' is {list(self.shape)} "
                              "(expected [null|N, C, H, W] with positive ints)")
        if self.shape[1] is not None and self.shape[1] != len(self.band_names):
            raise BundleError(f"manifest field 'input.shape' has {self.shape[1]} channels but "
                              f"'input.band_names' lists {len(self.band_names)}")

    @property
    def channels(self) -> int:
        return len(self.band_names)


#: Raw source -> modality of the deployed input (``s2`` = Sentinel-2 optical, ``s1`` = Sentinel-1
#: radar, ``chip`` = a radar image chip without geo-referencing, e.g. MSTAR).
MODALITY_OF_SOURCE = {"s2": "optical", "s1": "sar", "chip": "sar"}


DB_FLOOR = 1e-10  # linear power floor before log10: a zero pixel must not become -inf


@dataclass(frozen=True)
class PreprocessSpec(Record):
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
        sample_views: the data layer's view specs that read this raw input from a labelled
            dataset, in the order to try (``bands:<source_bands>``; ``sar`` then a ``sar-sim``
            view; a chip view's raw chip, e.g. ``edge-radar:factor=2,looks=1``): how export reads
            parity, calibration and gate samples, set by the view that made the spec. None in
            specs written before it was recorded (export then derives it from the view's name).
            Not part of what the graph does, so specs compare equal without it.
    """

    _where: ClassVar[str] = "preprocess"

    source: str
    source_bands: tuple[str, ...]
    source_units: Units
    select: tuple[int, ...]
    to_db: bool = False
    clip: tuple[float, float] | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    in_graph: bool = True
    to_log: bool = False
    crop: tuple[int, int] | None = None
    centre: bool = False
    sample_views: tuple[str, ...] | None = field(default=None, compare=False, metadata=OMIT_NONE)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check(self)
        if self.to_log and self.to_db:
            raise BundleError("manifest fields 'preprocess.to_db' and 'preprocess.to_log' are both "
                              "true (choose one log scale)")
        if self.centre and not (self.to_db or self.to_log):
            raise BundleError("manifest field 'preprocess.centre' needs a log scale "
                              "('preprocess.to_db' or 'preprocess.to_log')")
        if self.crop is not None and not all(v > 0 for v in self.crop):
            raise BundleError(f"manifest field 'preprocess.crop' must be [h, w] (positive ints) or "
                              f"null, got {list(self.crop)!r}")
        n = len(self.source_bands)
        if not self.select or not all(0 <= i < n for i in self.select):
            raise BundleError(f"manifest field 'preprocess.select' {list(self.select or ())} does not "
                              f"index 'preprocess.source_bands' ({n} bands)")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v and len(v) != len(self.select):
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
        """The clip the network applies itself (InputNorm): :func:`net_clip` of this spec."""
        return net_clip(self.clip, self.centre)

    # -- the op chain: one list, rendered in numpy here and in torch by export ---------------------
    def ops(self, normalise: bool = True) -> tuple[PreprocessOp, ...]:
        """The preprocessing as a list of typed ops, in order: select -> centre crop -> log scale ->
        clip -> per-sample centring -> normalisation (``normalise``).

        The one definition of the chain: :meth:`apply` folds the ops' numpy renderings, export's
        graph folds their torch renderings (``export.onnx.torch_op``), and the chip views' data
        layer folds the numpy ones between its crop and the network. An identity band selection is
        left out (the graph has no op to trace for it).
        """
        out: list[PreprocessOp] = []
        if list(self.select) != list(range(len(self.source_bands))):
            out.append(Select(tuple(self.select)))
        if self.crop is not None:
            out.append(CentreCrop(self.crop))
        if self.to_db or self.to_log:
            out.append(LogScale("db" if self.to_db else "log1p", self.db_factor))
        if self.clip is not None:
            out.append(Clip(float(self.clip[0]), float(self.clip[1])))
        if self.centre:
            out.append(CentreMean())
        if normalise:
            if not self.has_stats:
                raise ValueError("the preprocessing spec has no band statistics to normalise with")
            out.append(Normalise(self.mean, self.std))
        return tuple(out)

    def graph_ops(self, net_clips: bool | None = None) -> tuple[PreprocessOp, ...]:
        """The ops the deployed graph runs before the network: :meth:`ops` without what the
        network's InputNorm does itself (the normalisation, and the clip when it clips).

        Args:
            net_clips: whether the network clips (default: it does when :attr:`clip_in_net` is set).
        """
        net_clips = self.clip_in_net is not None if net_clips is None else net_clips
        return tuple(op for op in self.ops(normalise=False) if not (net_clips and isinstance(op, Clip)))

    @property
    def db_factor(self) -> float:
        """10 for power units, 20 for amplitude units: the same dB either way."""
        return 20.0 if self.source_units in AMPLITUDE_UNITS else 10.0

    def network_hw(self, hw: Sequence[int]) -> tuple[int, int]:
        """Spatial size the network sees for a raw input of ``hw`` (after the crop).

        Raises:
            BundleError: the crop is larger than the input.
        """
        if self.crop is None:
            return int(hw[0]), int(hw[1])
        CentreCrop(self.crop).offsets(hw)  # raises when the crop does not fit
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
        """The numpy reference of the in-graph preprocessing: :meth:`ops` rendered in numpy.

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
        return render_numpy(self.ops(normalise), x)


def net_clip(clip: tuple[float, float] | None, centre: bool) -> tuple[float, float] | None:
    """The clip the network applies itself (its InputNorm): ``clip``, unless the input is centred.

    The one clip rule. The clip always sits after the log scale and before normalisation; with
    per-sample centring it must also come before the centring, so then the graph (and a chip view's
    data layer) clips and the network must not clip after; otherwise the network clips and the
    graph leaves it out (one clip per path). ``PreprocessSpec.clip_in_net``, ``graph_ops``, the
    chip views' ``clip`` and export all read it from here.
    """
    return None if centre else clip


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


@dataclass(frozen=True)
class Select:
    """Pick the network's input channels from the raw source bands, in order."""

    indices: tuple[int, ...]

    def numpy(self, y: Any) -> Any:
        return y[:, list(self.indices)]


@dataclass(frozen=True)
class CentreCrop:
    """The centre ``(h, w)`` window (:func:`centre_offset`): the device feeds the whole chip."""

    size: tuple[int, int]

    def offsets(self, hw: Sequence[int]) -> tuple[int, int]:
        """(top, left) of the window in an input of ``hw``.

        Raises:
            BundleError: the crop is larger than the input.
        """
        (h, w), (ch, cw) = (int(hw[0]), int(hw[1])), self.size
        if ch > h or cw > w:
            raise BundleError(f"preprocess crop {ch}x{cw} is larger than the input {h}x{w}")
        return centre_offset(h, ch), centre_offset(w, cw)

    def numpy(self, y: Any) -> Any:
        top, left = self.offsets(y.shape[-2:])
        return y[..., top:top + self.size[0], left:left + self.size[1]]


@dataclass(frozen=True)
class LogScale:
    """``factor * log10(max(y, DB_FLOOR))`` (``db``) or ``log(1 + max(y, 0))`` (``log1p``)."""

    kind: Literal["db", "log1p"]
    factor: float = 10.0

    def numpy(self, y: Any) -> Any:
        return log_scale(y, self.kind == "db", self.kind == "log1p", self.factor)


@dataclass(frozen=True)
class Clip:
    """Clamp to ``[lo, hi]`` (where: :func:`net_clip`)."""

    lo: float
    hi: float

    def numpy(self, y: Any) -> Any:
        import numpy as np

        return np.clip(y, np.float32(self.lo), np.float32(self.hi))


@dataclass(frozen=True)
class CentreMean:
    """Subtract each sample's per-band spatial mean (:func:`centre_mean`)."""

    def numpy(self, y: Any) -> Any:
        return centre_mean(y)


@dataclass(frozen=True)
class Normalise:
    """``(y - mean) / max(std, 1e-6)`` per band: the network's InputNorm (a constant band, std 0,
    must not divide by zero)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def inv_std(self) -> Any:
        import numpy as np

        return (1.0 / np.maximum(np.asarray(self.std, np.float32), np.float32(1e-6))).astype(np.float32)

    def numpy(self, y: Any) -> Any:
        import numpy as np

        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        return (y - mean) * self.inv_std().reshape(1, -1, 1, 1)


PreprocessOp = Select | CentreCrop | LogScale | Clip | CentreMean | Normalise
#: every op type, in chain order (a rendering must cover each)
OP_TYPES: tuple[type, ...] = (Select, CentreCrop, LogScale, Clip, CentreMean, Normalise)


def render_numpy(ops: Sequence[PreprocessOp], x: Any) -> Any:
    """Run ``ops`` in numpy on ``x`` (N, C, H, W); float32 out."""
    import numpy as np

    y = x0 = np.asarray(x, dtype=np.float32)
    for op in ops:
        y = op.numpy(y)
    return y.copy() if y is x0 else np.asarray(y, dtype=np.float32)  # never the caller's array


@dataclass(frozen=True)
class OutputSpec(Record):
    """The model's output: logits, turned into probabilities by ``activation``."""

    _where: ClassVar[str] = "output"

    name: str = "logits"
    activation: Activation = field(default="softmax", metadata=REQUIRED)
    #: multi-label only: per-class decision thresholds on the sigmoid probabilities, one per class,
    #: chosen on the validation split at export (how: ``provenance.thresholds``); None = 0.5 each
    thresholds: tuple[float, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check(self)
        if self.thresholds is not None and not (
                self.thresholds and all(0.0 <= t <= 1.0 for t in self.thresholds)):
            raise BundleError("manifest field 'output.thresholds' must be a list of numbers in "
                              "[0, 1] (one per class) or null")
        if self.thresholds is not None and self.activation != "sigmoid":
            raise BundleError("manifest field 'output.thresholds' is only for multi-label "
                              "(sigmoid) outputs")

    def threshold_array(self, k: int) -> Any:
        """The (K,) thresholds as float32 (0.5 each when none are recorded)."""
        import numpy as np

        return np.asarray(self.thresholds if self.thresholds is not None else [0.5] * k, np.float32)
