"""Modality views: how one model input is derived from the raw sources of a sample.

A view never copies data: ``rgb`` is bands B04,B03,B02 of the Sentinel-2 source, ``sar-sim`` is
computed from it on the fly. Each view also says how to reproduce its input on a device
(:meth:`View.deploy_input`), which is the preprocessing spec baked into the exported model.

Specs (``parse_view``): ``ms``, ``rgb``, ``bands:B02,B03,B04,B08``, ``sar``, ``sar-sim`` or
``sar-sim:looks=8``.
"""

from __future__ import annotations

import dataclasses
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
from cmkd_edge.runtime.manifest import PreprocessSpec

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
        return PreprocessSpec(source=source, source_bands=tuple(bands), source_units=units,
                              select=tuple(select), to_db=self.modality == "sar" and units == "linear",
                              clip=self.clip)

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
