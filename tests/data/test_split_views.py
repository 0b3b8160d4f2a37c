"""The data layer's numpy half (``open_split``, no torch) reads what the torch Dataset reads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_data_chips import make_chips  # noqa: E402


@pytest.mark.parametrize("view", ["chip", "chip:crop=24,scale=db,norm=mean", "edge-radar:crop=24,factor=2,looks=1"])
def test_open_split_equals_open_dataset(tmp_path: Path, view: str) -> None:
    from cmkd_edge.data import open_dataset
    from cmkd_edge.data.split_views import open_split

    root = make_chips(tmp_path / "chips", per_class=6)
    for split in ("train", "test"):
        a = open_split(root, views=[view], split=split, seed=3)
        b = open_dataset(root, views=[view], split=split, seed=3)
        name = next(iter(a.views))
        assert a.ids == b.ids and np.array_equal(a.labels, b.labels) and a.class_names == b.class_names
        np.testing.assert_array_equal(a.view_batch(name), b.view_batch(name))  # speckle draws too
        assert a.describe() == b.describe()


def test_open_split_imports_no_torch(tmp_path: Path) -> None:
    root = make_chips(tmp_path / "chips", per_class=4)
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # not installed
        from cmkd_edge.data.split_views import open_split
        ds = open_split({str(root)!r}, views=["chip:crop=24"], split="test")
        print(len(ds), ds.view_batch(next(iter(ds.views))).shape)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] != "0"
