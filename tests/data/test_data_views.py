"""Views: names, band orders, units, deploy specs, on synthetic and real EuroSAT / BigEarthNet data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cmkd_edge.runtime.contract.specs import PreprocessSpec

from cmkd_edge.data import open_dataset
from cmkd_edge.data.bands import BEN_S2_BANDS, EUROSAT_BANDS
from cmkd_edge.data.views import VIEWS, Sample, parse_view
from cmkd_edge.errors import ConfigError, DataError, UnknownNameError

torch.set_num_threads(1)

SPECS = ["ms", "rgb", "bands:B02,B03,B04,B08", "sar", "sar-sim"]
EXPECTED = {
    "ms": (EUROSAT_BANDS, "optical", "reflectance_x1e4", False),
    "rgb": (("B04", "B03", "B02"), "optical", "reflectance_x1e4", False),
    "bands:B02,B03,B04,B08": (("B02", "B03", "B04", "B08"), "optical", "reflectance_x1e4", False),
    "sar": (("VV", "VH"), "sar", "db", False),
    "sar-sim": (("VV", "VH"), "sar", "db", True),
}


def test_registry_lists_every_view() -> None:
    assert set(VIEWS.names()) == {"ms", "rgb", "bands", "sar", "sar-sim", "chip", "edge-radar"}


@pytest.mark.parametrize("spec", SPECS)
def test_view_on_synthetic(spec: str, tiny: str) -> None:
    ds = open_dataset(tiny, views=[spec], split="val")
    view = ds.views[spec]
    bands, modality, units, synthetic = EXPECTED[spec]
    assert (view.name, view.band_names, view.modality, view.units, view.synthetic) == (
        spec, bands, modality, units, synthetic)
    x, label = ds[0]
    assert x[spec].dtype == torch.float32 and x[spec].shape == (len(bands), 16, 16)
    assert torch.isfinite(x[spec]).all()
    assert label.dtype == torch.int64 and label.ndim == 0


@pytest.mark.parametrize("spec", ["ms", "rgb", "bands:B02,B03,B04,B08", "sar-sim"])
def test_view_on_real_eurosat(spec: str, eurosat_dir) -> None:
    ds = open_dataset(eurosat_dir, views=[spec], split="test")
    x, _ = ds[0]
    bands = EXPECTED[spec][0]
    assert x[spec].shape == (len(bands), 64, 64)
    assert ds.views[spec].band_names == bands
    if spec == "sar-sim":
        assert -45 < float(x[spec].mean()) < 5
    else:
        assert float(x[spec].min()) >= 0 and float(x[spec].max()) > 100


def test_sar_view_needs_s1(eurosat_dir) -> None:
    with pytest.raises(DataError, match="needs source 's1'"):
        open_dataset(eurosat_dir, views=["sar"])


def test_sar_on_optical_data_suggests_sar_sim(eurosat_dir) -> None:
    """The message says what to use instead: the data has optical bands, so sar-sim works."""
    with pytest.raises(DataError) as info:
        open_dataset(eurosat_dir, views=["sar"])
    assert info.value.hint and "'sar-sim'" in info.value.hint and "synthetic" in info.value.hint
    assert "sar-sim" in info.value.one_line()


def test_rgb_is_bands_321_of_ms(tiny: str) -> None:
    ds = open_dataset(tiny, views=["ms", "rgb", "bands:B08,B02"], split="train")
    x, _ = ds[3]
    assert torch.equal(x["rgb"], x["ms"][[3, 2, 1]])
    assert torch.equal(x["bands:B08,B02"], x["ms"][[7, 1]])


def test_rgb_on_bigearthnet_order(ben_dir) -> None:
    ds = open_dataset(ben_dir, views=["ms", "rgb", "bands:B8A"], split="all")
    assert ds.views["ms"].band_names == BEN_S2_BANDS
    x, y = ds[0]
    assert torch.equal(x["rgb"], x["ms"][[3, 2, 1]])
    assert torch.equal(x["bands:B8A"], x["ms"][[8]])
    assert ds.views["ms"].deploy_input(ds.source_band_names).select == tuple(range(12))


def test_band_names_are_normalised() -> None:
    assert parse_view("bands:b8,b8a,B2").band_names == ("B08", "B8A", "B02")


def test_unknown_band_lists_valid_bands() -> None:
    with pytest.raises(UnknownNameError, match="B99") as info:
        parse_view("bands:B02,B99")
    assert "B8A" in info.value.one_line()


def test_unknown_view_lists_valid_views() -> None:
    with pytest.raises(UnknownNameError) as info:
        parse_view("thermal")
    assert "sar-sim" in info.value.one_line()


@pytest.mark.parametrize("spec", ["rgb:x", "bands:", "bands:B02,B02", "sar-sim:looks=0",
                                  "sar-sim:foo=1"])
def test_malformed_specs(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_view(spec)


def test_band_missing_from_data_is_data_error(ben_dir) -> None:
    with pytest.raises(DataError, match="band B10 not in"):
        open_dataset(ben_dir, views=["bands:B10"])


def test_deploy_input_rgb_and_ms() -> None:
    spec = parse_view("rgb").deploy_input({"s2": EUROSAT_BANDS})
    assert spec == PreprocessSpec(source="s2", source_bands=tuple(EUROSAT_BANDS),
                                  source_units="reflectance_x1e4", select=(3, 2, 1), to_db=False,
                                  clip=parse_view("rgb").clip)
    ben = parse_view("bands:B8A,B04").deploy_input(BEN_S2_BANDS)
    assert ben.select == (8, 3)


def test_deploy_input_sar_sim_is_real_sar() -> None:
    spec = parse_view("sar-sim").deploy_input({"s2": EUROSAT_BANDS})
    assert (spec.source, spec.source_bands, spec.source_units, spec.select,
            spec.to_db) == ("s1", ("VV", "VH"), "db", (0, 1), False)
    linear = parse_view("sar").deploy_input({"s1": ("VH", "VV")}, source_units="linear")
    assert linear.select == (1, 0) and linear.to_db is True


def test_deploy_input_missing_band() -> None:
    with pytest.raises(DataError, match="B08"):
        parse_view("bands:B08").deploy_input(("B02", "B03", "B04"))


def test_view_on_plain_dict_sample_uses_default_order() -> None:
    arr = np.arange(13, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    assert parse_view("rgb")({"s2": arr})[:, 0, 0].tolist() == [3.0, 2.0, 1.0]
    named = Sample({"s2": arr[::-1].copy()}, {"s2": EUROSAT_BANDS[::-1]})
    assert parse_view("rgb")(named)[:, 0, 0].tolist() == [3.0, 2.0, 1.0]
