"""Modality views: how one model input is derived from the raw sources of a sample.

A view never copies data: ``rgb`` is bands B04,B03,B02 of the Sentinel-2 source, ``sar-sim`` is
computed from it on the fly. Each view also says how to reproduce its input on a device
(:meth:`View.deploy_input`), which is the preprocessing spec baked into the exported model.

Specs (``parse_view``): ``ms``, ``rgb``, ``bands:B02,B03,B04,B08``, ``sar``, ``sar-sim`` or
``sar-sim:looks=8``; for radar chips ``chip`` (``chip:crop=88,scale=db``) and the synthetic
``edge-radar`` (``edge-radar:crop=88,factor=2,looks=1``), see :class:`ChipView`.

Augmentation is chosen per view (``View.augment``): overhead optical and Sentinel-1 patches take the
eight flips/rotations, radar chips take random crops only (see :mod:`cmkd_edge.data.augment`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from cmkd_edge._registry import Registry
from cmkd_edge.data.bands import (
    EUROSAT_BANDS,
    OPTICAL_UNITS,
    RGB_BANDS,
    S1_BANDS,
    S2_BANDS,
    band_indices,
    default_band_names,
    normalise_band_name,
)
from cmkd_edge.data.sar_sim import simulate_sar
from cmkd_edge.errors import ConfigError, DataError, UnknownNameError
from cmkd_edge.runtime.contract.specs import (
    CentreCrop,
    PreprocessOp,
    PreprocessSpec,
    Select,
    centre_offset,
    net_clip,
    render_numpy,
)
from cmkd_edge.runtime.formats.chips import CHIP_BANDS, CHIP_UNITS

#: Clip ranges applied by the model before normalisation: they bound outliers (saturated or
#: nodata pixels, -inf dB from zero power) so calibration and normalisation are not skewed.
OPTICAL_CLIP = (0.0, 20000.0)
SAR_CLIP = (-50.0, 30.0)


class Sample(dict):
    """Raw arrays per source (``"s2"``: (B, H, W), ``"s1"``: (2, H, W) dB) with their band names."""

    def __init__(self, arrays: Mapping[str, np.ndarray],
                 band_names: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(arrays)
        self.band_names = {k: tuple(v) for k, v in (band_names or {}).items()}


def sample_bands(sample: Mapping[str, np.ndarray], source: str) -> tuple[str, ...]:
    """Band names of ``source`` in ``sample`` (its own, else the default order for its band count)."""
    if source not in sample:
        raise DataError(f"this data has no {source!r} source (has {', '.join(sorted(sample))})")
    names = getattr(sample, "band_names", {}).get(source)
    if names:
        return tuple(names)
    count = np.shape(sample[source])[-3]
    names = default_band_names(count, source)
    if names is None:
        raise DataError(f"cannot name the {count} bands of source {source!r}")
    return names


@dataclasses.dataclass(frozen=True)
class View:
    """One model input derived from a sample (see docs/architecture.md, "Data").

    Attributes:
        name: the spec string, e.g. ``"rgb"``.
        modality: ``"optical"`` or ``"sar"``.
        source: raw source the view reads during training (``"s2"`` or ``"s1"``).
        band_names: output channels in order.
        units: units of the output values (``"reflectance_x1e4"`` or ``"db"``).
        synthetic: True when the view is simulated (reported as synthetic everywhere).
        clip: ``(lo, hi)`` the model applies before normalisation, or None.
    """

    name: str
    modality: str
    source: str
    band_names: tuple[str, ...]
    units: str
    synthetic: bool = False
    clip: tuple[float, float] | None = None
    all_bands: bool = False  # ``ms``: every band of the source, in the source's order
    # raw file units per source, remembered by ``bind`` so deploy_input knows linear SAR
    bound_units: tuple[tuple[str, str], ...] = ()
    #: augmentations the dataset may apply to this view when augmenting (names in
    #: ``cmkd_edge.data.augment.AUGMENTATIONS``); nadir patches have no "up", so D4 is the default
    augment: tuple[str, ...] = ("dihedral",)

    # -- the two things a view does --------------------------------------------------------
    def __call__(self, sample: Mapping[str, np.ndarray],
                 rng: np.random.Generator | None = None) -> np.ndarray:
        """The view of ``sample`` as ``(C, H, W)`` float32 in raw units (not normalised).

        Arrays with leading batch axes ``(..., B, H, W)`` work too (used by band statistics).
        """
        have = sample_bands(sample, self.source)
        arr = np.asarray(sample[self.source])
        if self.all_bands:
            return arr.astype(np.float32, copy=False)
        idx = self._indices(have, where=f"source {self.source!r}")
        return np.take(arr, idx, axis=-3).astype(np.float32, copy=False)

    def deploy_input(self, source_band_names: Mapping[str, Sequence[str]] | Sequence[str] | None
                     = None, source_units: Mapping[str, str] | str | None = None) -> PreprocessSpec:
        """Preprocessing spec the deployed model applies to raw sensor input.

        Args:
            source_band_names: bands of the raw input in file order, per source (a mapping like
                ``ds.source_band_names``) or for the deployed source (a sequence).
            source_units: units of the raw deployed input (mapping per source, or one string);
                ``"linear"`` SAR adds the dB conversion. Default: the units of the data the view
                was bound to, else reflectance_x1e4 / db.

        Returns:
            The spec without band statistics (the trainer adds them with ``with_stats``).
        """
        source = self.deploy_source
        bands = _bands_for(source_band_names, source, self._default_deploy_bands())
        units = source_units.get(source) if isinstance(source_units, Mapping) else source_units
        units = units or dict(self.bound_units).get(source)
        units = units or (OPTICAL_UNITS if self.modality == "optical" else "db")
        if self.all_bands:
            select = list(range(len(bands)))
        else:
            select = self._indices(bands, where=f"the deployed {source!r} input")
        # the views that read the raw deployed input: real Sentinel-1 first, else (optical-only
        # data) this view's own simulation
        samples = (("bands:" + ",".join(bands),) if source == "s2" else
                   ("sar",) if self.name == "sar" else ("sar", self.name))
        return PreprocessSpec(source=source, source_bands=tuple(bands), source_units=units,
                              select=tuple(select), to_db=self.modality == "sar" and units == "linear",
                              clip=self.clip, sample_views=samples)

    # -- helpers ---------------------------------------------------------------------------
    @property
    def deploy_source(self) -> str:
        """Raw source the deployed model reads (``sar-sim`` trains on s2, deploys on real s1)."""
        return self.source

    def _default_deploy_bands(self) -> tuple[str, ...]:
        return self.band_names

    def _indices(self, have: Sequence[str], where: str) -> list[int]:
        idx = band_indices(self.band_names, have)
        if idx is None:
            missing = [b for b in self.band_names if b not in have]
            raise DataError(
                f"band {','.join(missing)!s} not in {where} (has {','.join(have)})",
                f"view {self.name!r} needs {','.join(self.band_names)}",
            )
        return idx

    def bind(self, source_band_names: Mapping[str, Sequence[str]], where: str = "the data",
             source_units: Mapping[str, str] | None = None) -> View:
        """This view resolved against a dataset's bands (``ms`` takes the source's band list) and
        raw units (used by :meth:`deploy_input`).

        Raises:
            DataError: the dataset lacks the view's source or one of its bands.
        """
        if self.source not in source_band_names:
            raise DataError(
                f"view {self.name!r} needs source {self.source!r}, which {where} lacks "
                f"(has {', '.join(sorted(source_band_names)) or 'none'})",
                "use the view 'sar-sim' for SAR simulated from the optical bands (reported as synthetic)"
                if self.source == "s1" and "s2" in source_band_names else None,
            )
        have = tuple(source_band_names[self.source])
        units = tuple(sorted((source_units or {}).items()))
        if self.all_bands:
            return dataclasses.replace(self, band_names=have, bound_units=units)
        self._indices(have, where=f"{where} (source {self.source!r})")
        return dataclasses.replace(self, bound_units=units)

    def info(self) -> dict[str, Any]:
        """What a checkpoint records about the view (``view_info``)."""
        return {"name": self.name, "modality": self.modality, "source": self.source,
                "band_names": list(self.band_names), "units": self.units,
                "synthetic": self.synthetic}


@dataclasses.dataclass(frozen=True)
class SarSimView(View):
    """Simulated SAR from the optical source (see :mod:`cmkd_edge.data.sar_sim`)."""

    looks: float = 4.0

    def __call__(self, sample: Mapping[str, np.ndarray],
                 rng: np.random.Generator | None = None) -> np.ndarray:
        if rng is None:
            rng = np.random.default_rng(0)
        have = sample_bands(sample, self.source)
        return simulate_sar(np.asarray(sample[self.source]), have, rng, self.looks)

    @property
    def deploy_source(self) -> str:
        return "s1"

    def bind(self, source_band_names: Mapping[str, Sequence[str]], where: str = "the data",
             source_units: Mapping[str, str] | None = None) -> View:
        if self.source not in source_band_names:
            raise DataError(f"view {self.name!r} needs an optical source, which {where} lacks")
        from cmkd_edge.data.sar_sim import SIM_BANDS

        have = tuple(source_band_names[self.source])
        missing = [b for b in SIM_BANDS if b not in have]
        if missing:
            raise DataError(f"band {','.join(missing)} not in {where} (has {','.join(have)})",
                            f"view {self.name!r} needs {','.join(SIM_BANDS)}")
        return dataclasses.replace(self, bound_units=tuple(sorted((source_units or {}).items())))


def _bands_for(given: Mapping[str, Sequence[str]] | Sequence[str] | None, source: str,
               default: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(given, Mapping):
        got = given.get(source)
        return tuple(got) if got else default
    if given:
        got = tuple(given)
        # a sequence of another source's bands (e.g. s2 bands for sar-sim) does not apply
        if source == "s1" and not set(got) <= set(S1_BANDS):
            return default
        return got
    return default


# -- registry of view factories: factory(argument string) -> View ---------------------------
ViewFactory = Callable[[str, str], View]
VIEWS: Registry[ViewFactory] = Registry("view")


def _no_arg(spec: str, arg: str) -> None:
    if arg:
        raise ConfigError(f"view {spec!r} takes no argument")


@VIEWS.register("ms", help="all bands of the optical (Sentinel-2) source, in file order")
def _ms(spec: str, arg: str) -> View:
    # Until bound to a dataset (View.bind), ms assumes the 13 EuroSAT bands; bound, it takes
    # whatever the optical source holds (12 for BigEarthNet), in file order.
    _no_arg(spec, arg)
    return View(spec, "optical", "s2", EUROSAT_BANDS, OPTICAL_UNITS, clip=OPTICAL_CLIP,
                all_bands=True)


@VIEWS.register("rgb", help="B04,B03,B02 of the optical source")
def _rgb(spec: str, arg: str) -> View:
    _no_arg(spec, arg)
    return View(spec, "optical", "s2", RGB_BANDS, OPTICAL_UNITS, clip=OPTICAL_CLIP)


@VIEWS.register("bands", help="a named list of optical bands, e.g. bands:B02,B03,B04,B08")
def _bands(spec: str, arg: str) -> View:
    names = tuple(normalise_band_name(b) for b in arg.split(",") if b.strip())
    if not names:
        raise ConfigError(f"view {spec!r} names no bands", "e.g. bands:B02,B03,B04,B08")
    unknown = [b for b in names if b not in S2_BANDS]
    if unknown:
        raise UnknownNameError(f"unknown band {','.join(unknown)} in view {spec!r}",
                               f"valid bands: {','.join(S2_BANDS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"view {spec!r} repeats a band")
    return View(spec, "optical", "s2", names, OPTICAL_UNITS, clip=OPTICAL_CLIP)


@VIEWS.register("sar", help="Sentinel-1 VV,VH backscatter in dB")
def _sar(spec: str, arg: str) -> View:
    _no_arg(spec, arg)
    return View(spec, "sar", "s1", S1_BANDS, "db", clip=SAR_CLIP)


@VIEWS.register("sar-sim", help="SYNTHETIC VV,VH (dB) simulated from the optical source "
                "(speckle with L looks: sar-sim:looks=4)")
def _sar_sim(spec: str, arg: str) -> View:
    looks = 4.0
    for item in filter(None, (a.strip() for a in arg.split(","))):
        key, _, value = item.partition("=")
        if key != "looks":
            raise ConfigError(f"unknown option {key!r} of view {spec!r}", "valid: looks=<L>")
        try:
            looks = float(value)
        except ValueError:
            raise ConfigError(f"looks must be a number in view {spec!r}") from None
        if looks <= 0:
            raise ConfigError(f"looks must be > 0 in view {spec!r}")
    return SarSimView(spec, "sar", "s2", S1_BANDS, "db", synthetic=True, clip=SAR_CLIP,
                      looks=looks)


# -- radar chips --------------------------------------------------------------------------------
#: Per log scale of a chip view: the clip the network applies (8-bit magnitude is 0-255, i.e.
#: 0-48.13 dB of amplitude and log1p 0-5.545; a zero pixel is floored, then clipped to 0 dB).
CHIP_SCALES: dict[str, tuple[float, float]] = {"none": (0.0, 255.0), "db": (0.0, 48.2),
                                               "log": (0.0, 5.55)}
CHIP_AUGMENT = ("crop",)
#: Per-chip radiometric normalisations of a chip view (``norm=``); ``mean`` needs a log scale.
CHIP_NORMS = ("none", "mean")


@dataclasses.dataclass(frozen=True)
class ChipView(View):
    """One band of a radar chip (source ``chip``, 8-bit magnitude), centre-cropped and log-scaled.

    Options (``chip:crop=88,scale=db,aug=crop``):
        crop: the network sees the centre ``crop x crop`` pixels (training draws random crops of
            that size when augmenting, A-ConvNets' recipe); the device feeds the whole chip and
            the exported graph crops it. None = the whole chip.
        scale: ``none`` (magnitude 0-255), ``db`` (20 log10 of the magnitude) or ``log``
            (``log(1 + m)``); the deployed graph applies the same conversion to raw chips.
        aug: augmentations when training, ``+``-separated names (default ``crop``; ``none``).
            Rotations/flips are not the default: the radar shadow falls away from the sensor, so
            a rotated chip is not a chip the sensor can produce.
        shift: the training crops' translation range: the window moves at most ``shift`` pixels
            from the centre (inside the centre ``crop + 2 shift`` square). None = anywhere in the
            chip (A-ConvNets: 88 of 128, +-20 pixels). Why smaller: an MSTAR target sits in the
            chip's centre, and a window far off it trains on crops no test chip shows (the open
            A-ConvNets reproduction at 99.18 % crops from the centre 94x94, +-3).
        norm: ``mean`` subtracts each chip's mean (after the log scale and its clip, over the
            cropped window): a per-chip radiometric normalisation. Why: an 8-bit magnitude product
            is scaled by its processor and the scale moves with the acquisition (the 15-degree
            MSTAR test chips are ~1 dB darker than the 17-degree training chips); in dB a gain
            is an offset, and removing the chip's mean makes the net blind to it (aconv, 20
            epochs, seed 0, an exploration loop outside the trainer: 86.3 % test without, 96.3 %
            with; the trainer at 40 epochs: 98.35 %, docs/benchmarks.md). ``none`` (default)
            keeps absolute levels.
    """

    crop: int | None = None
    scale: str = "none"
    norm: str = "none"
    shift: int | None = None

    def full(self, sample: Mapping[str, np.ndarray], rng: np.random.Generator | None = None
             ) -> np.ndarray:
        """The whole chip in raw units, ``(..., 1, H, W)`` float32 (before crop and scale)."""
        have = sample_bands(sample, self.source)
        idx = self._indices(have, where=f"source {self.source!r}")
        return np.take(np.asarray(sample[self.source]), idx, axis=-3).astype(np.float32, copy=False)

    def __call__(self, sample: Mapping[str, np.ndarray], rng: np.random.Generator | None = None,
                 offset: tuple[int, int] | None = None) -> np.ndarray:
        """The view: full chip -> crop (centre, or at ``offset`` = (top, left)) -> log scale."""
        return self.finish(self.full(sample, rng), offset)

    def finish(self, arr: np.ndarray, offset: tuple[int, int] | None = None) -> np.ndarray:
        """Crop and scale a full chip array (what the deployed graph does to the raw chip): the crop
        here (a training crop may sit at ``offset``), the rest from the spec's op chain."""
        if self.crop is not None:
            h, w = arr.shape[-2:]
            if self.crop > min(h, w):
                raise DataError(f"view {self.name!r} crops {self.crop}x{self.crop} from {h}x{w} chips",
                                "choose a smaller --input-size")
            top, left = offset if offset is not None else (centre_offset(h, self.crop),
                                                           centre_offset(w, self.crop))
            arr = arr[..., top:top + self.crop, left:left + self.crop]
        return np.ascontiguousarray(render_numpy(self._after_crop, arr), dtype=np.float32)

    @functools.cached_property
    def _after_crop(self) -> tuple[PreprocessOp, ...]:
        """The deployed graph's ops after its crop, up to the network (``graph_ops``: the log scale,
        and with ``norm=mean`` the clip and the centring): the data layer renders the same list."""
        return tuple(op for op in self.deploy_input().graph_ops() if not isinstance(op, (Select, CentreCrop)))

    def deploy_input(self, source_band_names: Mapping[str, Sequence[str]] | Sequence[str] | None
                     = None, source_units: Mapping[str, str] | str | None = None) -> PreprocessSpec:
        """The raw chip (8-bit magnitude) in, with this view's crop and log scale in the graph."""
        bands = _bands_for(source_band_names, self.source, self.band_names)
        return PreprocessSpec(source=self.source, source_bands=tuple(bands), source_units=CHIP_UNITS,
                              select=tuple(self._indices(bands, "the deployed chip input")),
                              to_db=self.scale == "db", to_log=self.scale == "log",
                              clip=CHIP_SCALES[self.scale], centre=self.norm == "mean",
                              crop=None if self.crop is None else (self.crop, self.crop),
                              sample_views=(self.raw_spec,))

    @property
    def raw_spec(self) -> str:
        """Spec of the view yielding what the device feeds this view's model: the whole raw chip
        (for ``edge-radar``: the degraded chip, as the cheaper sensor would deliver it)."""
        return self.kind

    @property
    def kind(self) -> str:
        return self.name.partition(":")[0]

    def options(self) -> dict[str, str]:
        """The view's options as spec text (what ``parse_view`` reads back)."""
        out = {"crop": None if self.crop is None else str(self.crop), "scale": self.scale,
               "aug": "+".join(self.augment) or "none",
               "norm": None if self.norm == "none" else self.norm,
               "shift": None if self.shift is None else str(self.shift)}
        return {k: v for k, v in out.items() if v is not None}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "crop": self.crop, "scale": self.scale, "norm": self.norm,
                "shift": self.shift, "augment": list(self.augment)}


@dataclasses.dataclass(frozen=True)
class EdgeRadarView(ChipView):
    """SYNTHETIC: a radar chip degraded the way a cheaper on-board sensor would deliver it.

    The chip's intensity (magnitude squared) is averaged over ``factor x factor`` blocks (coarser
    resolution: a sensor with ``factor`` times the resolution cell), each block is multiplied by
    Gamma(``looks``, 1/``looks``) speckle (fewer looks: unit-mean multiplicative noise of variance
    1/looks, independent per resolution cell), the result is written back on the chip's pixel grid
    (each block repeated, so crops and the deployed input size stay those of the original chips)
    and re-quantised to 8-bit magnitude (square root, rounded, clipped to 0-255).

    Seeded like ``sar-sim``: the speckle comes from the dataset's generator for (seed, sample
    index), so evaluation sees one fixed realisation per chip and training a fresh one per epoch.
    The view is derived and is reported as synthetic everywhere (checkpoint, manifest, benchmarks).
    """

    factor: int = 2
    looks: float = 1.0

    def full(self, sample: Mapping[str, np.ndarray], rng: np.random.Generator | None = None
             ) -> np.ndarray:
        return degrade_chip(super().full(sample, rng), self.factor, self.looks,
                            rng if rng is not None else np.random.default_rng(0))

    @property
    def raw_spec(self) -> str:
        return f"{self.kind}:factor={self.factor},looks={self.looks:g}"

    def options(self) -> dict[str, str]:
        return {**super().options(), "factor": str(self.factor), "looks": f"{self.looks:g}"}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "factor": self.factor, "looks": self.looks}


def degrade_chip(mag: np.ndarray, factor: int, looks: float, rng: np.random.Generator) -> np.ndarray:
    """The edge-radar degradation of 8-bit magnitude chips ``(..., H, W)`` (see EdgeRadarView).

    Raises:
        DataError: the chip size is not a multiple of ``factor``.
    """
    h, w = mag.shape[-2:]
    if h % factor or w % factor:
        raise DataError(f"edge-radar factor {factor} does not divide the {h}x{w} chips",
                        "choose a factor that divides the chip size")
    inten = np.square(mag.astype(np.float64))
    lead = inten.shape[:-2]
    blocks = inten.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))
    if np.isfinite(looks):
        blocks = blocks * rng.gamma(looks, 1.0 / looks, size=blocks.shape)
    up = np.repeat(np.repeat(blocks, factor, axis=-2), factor, axis=-1)
    return np.clip(np.round(np.sqrt(up)), 0.0, 255.0).astype(np.float32)


def _chip_options(spec: str, arg: str, allowed: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (a.strip() for a in arg.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in allowed:
            raise ConfigError(f"unknown option {item!r} of view {spec!r}",
                              f"valid: {', '.join(k + '=...' for k in allowed)}")
        out[key] = value.strip()
    return out


def _chip_common(spec: str, opts: dict[str, str]) -> dict[str, Any]:
    from cmkd_edge.data.augment import AUGMENTATIONS

    kw: dict[str, Any] = {}
    if "crop" in opts:
        try:
            kw["crop"] = int(opts["crop"])
        except ValueError:
            raise ConfigError(f"crop must be an integer in view {spec!r}") from None
        if kw["crop"] < 1:
            raise ConfigError(f"crop must be >= 1 in view {spec!r}")
    scale = opts.get("scale", "none")
    if scale not in CHIP_SCALES:
        raise ConfigError(f"unknown scale {scale!r} in view {spec!r}", f"valid: {', '.join(CHIP_SCALES)}")
    norm = opts.get("norm", "none")
    if norm not in CHIP_NORMS:
        raise ConfigError(f"unknown norm {norm!r} in view {spec!r}", f"valid: {', '.join(CHIP_NORMS)}")
    if norm == "mean" and scale == "none":
        raise ConfigError(f"norm=mean in view {spec!r} needs a log scale (a gain is an offset only "
                          "in dB)", "add scale=db (or scale=log)")
    kw["scale"], kw["norm"] = scale, norm
    if "shift" in opts:
        try:
            kw["shift"] = int(opts["shift"])
        except ValueError:
            raise ConfigError(f"shift must be an integer in view {spec!r}") from None
        if kw["shift"] < 0 or "crop" not in kw:
            raise ConfigError(f"shift must be >= 0 and needs crop=N in view {spec!r}")
    kw["clip"] = net_clip(CHIP_SCALES[scale], centre=norm == "mean")  # the clip the network applies
    aug = tuple(a for a in opts.get("aug", "+".join(CHIP_AUGMENT)).split("+") if a and a != "none")
    for a in aug:
        AUGMENTATIONS.get(a)  # UnknownNameError lists the valid names
    kw["augment"] = aug
    units = {"none": CHIP_UNITS, "db": "db", "log": f"log1p_{CHIP_UNITS}"}[scale]
    return {**kw, "units": units}


@VIEWS.register("chip", help="a radar chip's 8-bit magnitude band: chip:crop=88,scale=none|db|log,"
                "norm=none|mean,shift=N,aug=crop|grid+gain (the default view of chip data)")
def _chip(spec: str, arg: str) -> View:
    kw = _chip_common(spec, _chip_options(spec, arg, ("crop", "scale", "aug", "norm", "shift")))
    return ChipView(spec, "sar", "chip", CHIP_BANDS, **kw)


@VIEWS.register("edge-radar", help="SYNTHETIC cheaper-sensor chip: block-averaged intensity "
                "(factor=2) with Gamma speckle (looks=1); also crop, scale, aug like chip")
def _edge_radar(spec: str, arg: str) -> View:
    opts = _chip_options(spec, arg, ("crop", "scale", "aug", "norm", "shift", "factor", "looks"))
    kw = _chip_common(spec, opts)
    try:
        factor = int(opts.get("factor", "2"))
        looks = float(opts.get("looks", "1"))
    except ValueError:
        raise ConfigError(f"factor must be an integer and looks a number in view {spec!r}") from None
    if factor < 1 or not looks > 0:
        raise ConfigError(f"factor must be >= 1 and looks > 0 in view {spec!r}")
    return EdgeRadarView(spec, "sar", "chip", CHIP_BANDS, synthetic=True, factor=factor,
                         looks=looks, **kw)


def with_input_size(spec: str, size: int | None) -> str:
    """``spec`` with ``crop=size`` (the ``--input-size`` option); unchanged when ``size`` is None.

    Raises:
        ConfigError: the view cannot crop (only chip views can), or it names another crop.
    """
    if size is None:
        return spec
    view = parse_view(spec)
    if not isinstance(view, ChipView):
        raise ConfigError(f"--input-size crops chip views; view {spec!r} has no crop",
                          "drop --input-size, or use a chip view (chip, edge-radar)")
    if view.crop is not None:
        if view.crop != size:
            raise ConfigError(f"--input-size {size} contradicts crop={view.crop} in view {spec!r}")
        return spec
    name, _, arg = spec.partition(":")
    return f"{name}:{arg + ',' if arg else ''}crop={int(size)}"


def parse_view(spec: str) -> View:
    """Build the view named by ``spec`` (``ms``, ``rgb``, ``bands:...``, ``sar``, ``sar-sim``).

    Raises:
        UnknownNameError: unknown view or band (the message lists valid names).
        ConfigError: malformed arguments.
    """
    if isinstance(spec, View):
        return spec
    spec = str(spec).strip()
    name, _, arg = spec.partition(":")
    return VIEWS.get(name)(spec, arg)
