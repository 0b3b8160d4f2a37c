"""The same one-line contract from the installed ``cmkd-edge`` script in a fresh process: what a
user's shell sees (no click test runner in between), including a file given to the wrong command."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .relhelp import assert_one_line_error, run_cmkd


def test_shell_sees_one_line_and_no_traceback(factory_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "text.tif").write_text("not a tiff")
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x02(((")
    np.save(tmp_path / "p.npy", np.zeros((12, 16, 16), np.float32))
    cases = [
        (["classify", factory_bundle, tmp_path / "text.tif"], ["text.tif", "not a readable GeoTIFF"]),
        (["classify", factory_bundle, tmp_path / "p.npy"], ["12 bands, the model expects 13"]),
        (["bundle", tmp_path / "text.tif", "--verify"], ["not a bundle"]),
        (["evaluate", tmp_path / "garbage.pt"], ["garbage.pt", "not a readable checkpoint"]),
        (["train-teacher", "--data", tmp_path / "nowhere", "--out", tmp_path / "r"], ["data path not found"]),
    ]
    for args, needles in cases:
        assert_one_line_error(run_cmkd(*args, timeout=180), *needles)
    # --debug is the documented way to get the traceback back
    res = run_cmkd("--debug", "bundle", tmp_path / "text.tif", "--verify")
    assert res.returncode != 0 and "Traceback" in res.stderr and "BundleError" in res.stderr
