"""Runtime pieces of the radar work: the paired difference, 8-bit magnitude units, the chip reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cmkd_edge.runtime.contract.specs import UNITS, InputSpec
from cmkd_edge.runtime.contract.units import EXPECTED_RANGE, units_problem
from cmkd_edge.runtime.formats.chips import find_chips, read_chip, read_chips
from cmkd_edge.runtime.metrics import agreement, paired_difference
from PIL import Image

from cmkd_edge.errors import DataError


def test_paired_difference_counts_and_direction() -> None:
    a = np.array([1] * 90 + [0] * 10, bool)
    b = a.copy()
    b[:3] = False          # three items only A gets right
    b[90:98] = True        # eight items only B gets right
    r = paired_difference(a, b)
    assert (r["n"], r["lost"], r["gained"]) == (100, 3, 8)
    assert r["acc_a"] == 0.90 and r["acc_b"] == 0.95 and r["difference"] == pytest.approx(0.05)
    assert r["lo"] < r["difference"] < r["hi"]
    # McNemar exact: 2 * P(X <= 3 | 11, 1/2) = 2 * (1 + 11 + 55 + 165) / 2048
    assert r["p_value"] == pytest.approx(2 * 232 / 2048)
    flipped = paired_difference(b, a)
    assert flipped["difference"] == pytest.approx(-0.05)
    assert flipped["lo"] == pytest.approx(-r["hi"]) and flipped["hi"] == pytest.approx(-r["lo"])


def test_paired_difference_without_discordant_items_is_not_degenerate() -> None:
    a = np.array([1] * 2400 + [0] * 25, bool)
    r = paired_difference(a, a)
    assert r["difference"] == 0 and r["lo"] < 0 < r["hi"] and not r["resolved_sign"] and r["p_value"] == 1.0
    assert r["hi"] < 0.003  # 2,425 identical outcomes pin the difference to a fraction of a point


def test_paired_difference_detects_a_real_difference() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(2425) < 0.95
    b = a.copy()
    b[np.flatnonzero(a)[:30]] = False  # B loses 30 items (1.2 points), gains none
    r = paired_difference(a, b)
    assert r["resolved_sign"] and r["hi"] < 0 and r["p_value"] < 1e-8


def test_paired_interval_coverage_is_near_nominal() -> None:
    """Coverage by simulation: paired outcomes with a known difference of accuracies."""
    rng = np.random.default_rng(1)
    n, hits, trials = 400, 0, 400
    # cell probabilities: both right, A only, B only, neither
    p = np.array([0.90, 0.01, 0.03, 0.06])
    true_diff = p[2] - p[1]
    for _ in range(trials):
        cells = rng.choice(4, size=n, p=p)
        a, b = np.isin(cells, (0, 1)), np.isin(cells, (0, 2))
        r = paired_difference(a, b)
        hits += r["lo"] <= true_diff <= r["hi"]
    assert 0.91 <= hits / trials <= 0.99


def test_paired_difference_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="length"):
        paired_difference([1, 0], [1])
    with pytest.raises(ValueError, match="at least one"):
        paired_difference([], [])
    with pytest.raises(ValueError, match="confidence"):
        paired_difference([1], [1], confidence=1.0)
    assert agreement([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75


def test_units_know_8bit_magnitude() -> None:
    assert "magnitude_u8" in UNITS and EXPECTED_RANGE["magnitude_u8"] == (0.0, 255.0)
    rng = np.random.default_rng(0)
    chip = rng.integers(0, 256, (1, 1, 32, 32)).astype(np.float32)
    assert units_problem(chip, "magnitude_u8", (0.0, 255.0)) is None
    # what users feed by mistake, each named, and 8-bit magnitude said to be neither dB nor power
    cases = {"dB": 20 * np.log10(chip + 1) - 30, "scaled 0-1": chip / 255.0, "linear power": chip ** 2}
    for what, x in cases.items():
        msg = units_problem(x.astype(np.float32), "magnitude_u8", (0.0, 255.0))
        assert msg and what in msg and "8-bit SAR magnitude" in msg and "neither dB nor linear power" in msg
    for units in ("db", "linear"):
        msg = units_problem(chip, units, EXPECTED_RANGE[units])
        assert msg and "8-bit SAR magnitude" in msg
    InputSpec(modality="sar", band_names=("MAG",), units="magnitude_u8", shape=(None, 1, 128, 128))


def _png(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


def test_chip_reader(tmp_path: Path) -> None:
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    a = _png(tmp_path / "a.png", grey)
    rgb_grey = _png(tmp_path / "b.png", np.repeat(grey[..., None], 3, axis=2))  # grey saved as RGB
    np.testing.assert_array_equal(read_chip(a), grey[None].astype(np.float32))
    np.testing.assert_array_equal(read_chip(rgb_grey), read_chip(a))
    Image.fromarray(grey).save(tmp_path / "c.jpeg", quality=95)
    (tmp_path / "sub").mkdir()
    _png(tmp_path / "sub" / "d.png", grey)
    (tmp_path / "notes.txt").write_text("x")
    files = find_chips([tmp_path])
    assert [f.name for f in files] == ["a.png", "b.png", "c.jpeg", "d.png"]
    assert read_chips(files).shape == (4, 1, 8, 8)
    _png(tmp_path / "big.png", np.zeros((9, 8), np.uint8))
    with pytest.raises(DataError, match="big.png is 9x8, expected 8x8"):
        read_chips([a, tmp_path / "big.png"])
    with pytest.raises(DataError, match="not a chip"):
        find_chips([tmp_path / "notes.txt"])
    with pytest.raises(DataError, match="does not exist"):
        find_chips([tmp_path / "missing.png"])
    noisy = _png(tmp_path / "n.png", np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.uint8))
    truncated = tmp_path / "t.png"
    truncated.write_bytes(noisy.read_bytes()[:2000])
    with pytest.raises(DataError, match="t.png is truncated or corrupt"):
        read_chip(truncated)
