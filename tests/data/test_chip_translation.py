"""The radar recipe's translation range (``shift=N``) and the reproduction's expanded set (``grid``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cmkd_edge.data import open_dataset
from cmkd_edge.data.augment import grid_offset, random_offset
from cmkd_edge.data.views import parse_view
from cmkd_edge.errors import ConfigError, DataError
from tests.data.test_data_chips import make_chips


def test_shift_keeps_random_crops_near_the_centre() -> None:
    rng = np.random.default_rng(0)
    offsets = {random_offset((128, 128), 88, rng, shift=3) for _ in range(2000)}
    assert min(o[0] for o in offsets) == 17 and max(o[0] for o in offsets) == 23  # centre 20 +- 3
    assert len(offsets) == 49
    wide = {random_offset((128, 128), 88, rng) for _ in range(2000)}
    assert max(o[0] for o in wide) > 30  # without shift: anywhere in the chip (+-20)


def test_grid_visits_every_position_once_per_cycle_in_a_per_chip_order() -> None:
    seen = [grid_offset((128, 128), 88, 3, (0, 7), e) for e in range(49)]
    assert len(set(seen)) == 49  # the reproduction's 49 stride-1 crops, each once
    assert grid_offset((128, 128), 88, 3, (0, 7), 49) == seen[0]  # the next cycle repeats the order
    other = [grid_offset((128, 128), 88, 3, (0, 8), e) for e in range(49)]
    assert other != seen and set(other) == set(seen)


def test_shift_option_round_trips_and_is_checked(tmp_path: Path) -> None:
    v = parse_view("chip:crop=88,scale=db,norm=mean,shift=3,aug=grid+gain")
    assert v.shift == 3 and v.augment == ("grid", "gain")
    assert parse_view(f"chip:{','.join(f'{k}={x}' for k, x in v.options().items())}").shift == 3
    with pytest.raises(ConfigError, match="shift"):
        parse_view("chip:shift=3")  # no crop to shift
    with pytest.raises(ConfigError, match="shift"):
        parse_view("chip:crop=8,shift=-1")
    chips = make_chips(tmp_path / "c", size=32)
    ds = open_dataset(chips, views=["chip:crop=24,shift=9,aug=crop"], split="train", augment=True)
    with pytest.raises(DataError, match="shifted by up to 9 pixels does not fit"):
        ds.view_arrays(0)


def test_grid_training_crops_follow_the_epoch(tmp_path: Path) -> None:
    chips = make_chips(tmp_path / "c", size=32)
    spec = "chip:crop=24,shift=1,aug=grid"
    ds = open_dataset(chips, views=[spec], split="train", augment=True)
    full = ds.sample(0)["chip"].astype(np.float32)
    crops = []
    for epoch in range(9):
        ds.set_epoch(epoch)
        crops.append(ds.view_arrays(0)[spec][0])
    # every stride-1 window of +-1 around the centre, once in 9 epochs
    windows = {(t, le) for t in range(3, 6) for le in range(3, 6)}
    found = {next((t, le) for t, le in windows if np.array_equal(c, full[0, t:t + 24, le:le + 24]))
             for c in crops}
    assert found == windows
