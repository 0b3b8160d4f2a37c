"""precision=auto by measured speed: the probe ranks gated artifacts, caches per device + bundle,
and the fixed order stays the fallback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cmkd_edge.runtime.classifier import Classifier, select_artifacts
from cmkd_edge.runtime.contract.bundle import open_bundle
from cmkd_edge.runtime.contract.manifest import Manifest, read_manifest
from cmkd_edge.runtime.speed_probe import SCHEMA, TIE, cache_path, device_key, rank_by_speed

from cmkd_edge.fsutil import atomic_write_json


def _ort_pairs(bundle: Path):
    b = open_bundle(bundle)
    return b, select_artifacts(b.manifest, "onnxruntime", backends=["onnxruntime"])


def test_probe_measures_ranks_and_caches(int8_bundle: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    b, pairs = _ort_pairs(int8_bundle)
    order, rec = rank_by_speed(b, pairs, cache_dir=cache, rounds=3, calls=5)
    assert rec["how"] == "measured" and not rec["cached"]
    ms = rec["ms_p50_batch1"]
    assert set(ms) == {"onnxruntime:onnx-fp32", "onnxruntime:onnx-int8"} and min(ms.values()) > 0
    first = f"{order[0][0]}:{order[0][1].id}"
    # fastest measured first, unless the fixed order's pick is within TIE of it
    assert ms[first] == min(ms.values()) or (
        first == "onnxruntime:onnx-int8" and ms[first] <= min(ms.values()) * (1 + TIE))
    path = Path(rec["cache"])
    assert path.parent == cache / "speed" and json.loads(path.read_text())["schema"] == SCHEMA
    stamp = path.stat().st_mtime_ns
    _, again = rank_by_speed(b, pairs, cache_dir=cache)
    assert again["cached"] and again["ms_p50_batch1"] == ms and path.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("fast", ["onnx-fp32", "onnx-int8"])
def test_choice_follows_the_measured_numbers(int8_bundle: Path, tmp_path: Path, fast: str) -> None:
    """A probe record (as the probe writes it) decides: whichever artifact it measured faster runs."""
    cache = tmp_path / "cache"
    b, pairs = _ort_pairs(int8_bundle)
    ms = {"onnxruntime:onnx-fp32": 2.0, "onnxruntime:onnx-int8": 2.0}
    ms[f"onnxruntime:{fast}"] = 1.0
    path = cache_path(b, device_key(None, None), cache)
    atomic_write_json(path, {"schema": SCHEMA, "version": 1, "candidates": sorted(ms),
                             "ms_p50_batch1": ms, "failed": {}})
    with Classifier.open(int8_bundle, backend="onnxruntime", cache_dir=cache) as clf:
        assert clf.artifact.id == fast
        sel = clf.describe()["selection"]
        assert sel["how"] == "measured" and sel["cached"] and sel["chosen"] == f"onnxruntime:{fast}"
        assert "fastest gated artifact measured on this device" in sel["why"]
        if fast == "onnx-fp32":
            assert "fixed order would have run onnxruntime:onnx-int8" in sel["why"]


def test_near_tie_keeps_the_fixed_order(int8_bundle: Path, tmp_path: Path) -> None:
    b, pairs = _ort_pairs(int8_bundle)
    ms = {"onnxruntime:onnx-fp32": 1.0, "onnxruntime:onnx-int8": 1.0 + TIE / 2}
    atomic_write_json(cache_path(b, device_key(None, None), tmp_path),
                      {"schema": SCHEMA, "version": 1, "candidates": sorted(ms), "ms_p50_batch1": ms})
    order, rec = rank_by_speed(b, pairs, cache_dir=tmp_path)
    assert order[0][1].id == "onnx-int8" and rec["why"].startswith("within 5% of the fastest")


def test_ungated_int8_is_never_probed_and_fixed_order_is_the_fallback(int8_bundle: Path,
                                                                        tmp_path: Path) -> None:
    b = open_bundle(int8_bundle)
    d = b.manifest.to_dict()
    d["artifacts"][1]["gate_passed"] = False
    m = Manifest.from_dict(d)
    pairs = select_artifacts(m, "onnxruntime", backends=["onnxruntime"])
    order, rec = rank_by_speed(type(b)(b.root, m, b.source), pairs, cache_dir=tmp_path)
    assert order == pairs and rec["how"] == "fixed order" and "nothing to measure" in rec["why"]
    assert not (tmp_path / "speed").exists()
    # disabled: today's order, said so
    with Classifier.open(int8_bundle, probe=False, cache_dir=tmp_path) as clf:
        assert clf.precision == "int8" and "disabled" in clf.selection["why"]
    # an explicit precision is obeyed without a probe
    with Classifier.open(int8_bundle, precision="fp32", cache_dir=tmp_path) as clf:
        assert clf.precision == "fp32" and clf.selection["how"] == "explicit precision"


def test_changed_bundle_reprobes(int8_bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(int8_bundle, tmp_path / "b"))
    b1, pairs = _ort_pairs(copy)
    p1 = cache_path(b1, device_key(None, None), tmp_path)
    d = read_manifest(copy).to_dict()
    d["files"] = {**d["files"], "extra.txt": "0" * 64}
    b2 = type(b1)(b1.root, Manifest.from_dict(d), b1.source)
    assert cache_path(b2, device_key(None, None), tmp_path) != p1
    assert cache_path(b1, device_key(2, None), tmp_path) != p1  # threads are part of the key


def test_probe_is_torch_free(int8_bundle: Path, tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import json, sys
        sys.modules["torch"] = None  # = not installed
        from cmkd_edge.runtime.classifier import Classifier
        with Classifier.open({str(int8_bundle)!r}, backend="onnxruntime",
                             cache_dir={str(tmp_path)!r}) as clf:
            print(json.dumps(clf.selection))
        assert "torch" not in sys.modules or sys.modules["torch"] is None
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["how"] == "measured"


def test_classify_json_says_which_artifact_ran_and_why(int8_bundle: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    from click.testing import CliRunner

    from cmkd_edge.cli import main

    monkeypatch.setenv("CMKD_EDGE_CACHE", str(tmp_path / "cache"))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).uniform(0, 5000, (13, 16, 16)).astype(np.float32))
    res = CliRunner().invoke(main, ["classify", str(int8_bundle), str(tmp_path / "x.npy"), "--json",
                                    "--backend", "onnxruntime"])
    assert res.exit_code == 0, res.output
    sel = json.loads(res.stdout)["selection"]
    assert sel["how"] == "measured" and sel["chosen"] == f"onnxruntime:{json.loads(res.stdout)['artifact']}"
    ms = sel["ms_p50_batch1"]
    assert ms[sel["chosen"]] <= min(ms.values()) * (1 + TIE)
    res = CliRunner().invoke(main, ["classify", str(int8_bundle), str(tmp_path / "x.npy"), "--json",
                                    "--backend", "onnxruntime", "--no-speed-probe"])
    sel = json.loads(res.stdout)["selection"]
    assert sel["how"] == "fixed order" and json.loads(res.stdout)["artifact"] == "onnx-int8"
