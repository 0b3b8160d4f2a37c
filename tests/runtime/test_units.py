"""The wrong-units rule (runtime/contract/units.py): one detection, quantize refuses, the runtime warns."""

from __future__ import annotations

import numpy as np
import pytest
from cmkd_edge.runtime.contract.units import EXPECTED_RANGE, fraction_outside, units_problem

REFL = EXPECTED_RANGE["reflectance_x1e4"]


@pytest.mark.parametrize(("x", "units", "needle"), [
    (np.full(8, 0.3), "reflectance_x1e4", "reflectance scaled 0-1"),
    (np.linspace(0.01, 3.0, 8), "db", "linear backscatter"),
    (np.linspace(-20, -5, 8), "linear", "looks like dB"),
    (np.r_[np.full(6, -5.0), np.full(4, 100.0)], "reflectance_x1e4", "60% lie outside"),
    (np.full(8, 5e5), "reflectance_x1e4", "100% lie outside"),
])
def test_detected(x, units, needle):
    msg = units_problem(np.asarray(x, np.float32), units, EXPECTED_RANGE[units], "batch")
    assert msg is not None and needle in msg


def test_plausible_and_partly_outside_pass():
    x = np.r_[np.full(6, 1200.0), np.full(4, 25000.0)].astype(np.float32)  # 40 % saturated cloud
    assert units_problem(x, "reflectance_x1e4", REFL) is None
    assert fraction_outside(x, REFL) == pytest.approx(0.4)
    assert fraction_outside(np.full(4, 10.0), REFL) == 0.0


def test_quantize_refuses_what_the_runtime_flags():
    """0-1 reflectance used to pass quantize (all inside 0..20000) while the runtime warned."""
    from cmkd_edge.export.samples import check_raw_batch
    from cmkd_edge.runtime.contract.specs import InputSpec

    from cmkd_edge.errors import ExportValidationError

    entry = InputSpec(modality="optical", band_names=("B04",), units="reflectance_x1e4",
                      shape=(None, 1, 4, 4), expected_range=REFL)
    x = np.full((2, 1, 4, 4), 0.3, np.float32)
    with pytest.raises(ExportValidationError, match="reflectance scaled 0-1"):
        check_raw_batch(x, entry, "calibration data")
    assert check_raw_batch(x * 1e4, entry, "c")["fraction_outside_expected"] == 0.0
