"""Every verb on the runtime-only install (``pip install cmkd-edge``): one line naming the extra, exit 2.

The environment: a fresh interpreter in which each optional package is set to ``None`` in
``sys.modules`` before the CLI is imported. That is how Python itself reports a package that is not
installed (``import torch`` raises ``ModuleNotFoundError``, ``importlib.util.find_spec`` returns None),
so the CLI sees exactly what it sees on a device without the extras, while the test needs no second
virtual environment (which would take minutes to build on every run). Base packages (numpy, click,
rich, onnxruntime, Pillow) are the real ones (rasterio is the [geo] extra: blocked too, except where
said), and classify/profile run for real in the same process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

#: import names the base install does not have (pyproject's extras)
OPTIONAL = ("torch", "onnx", "onnxscript", "onnxslim", "sklearn", "matplotlib", "openvino", "nncf",
            "tensorrt", "cuda", "rasterio")
TRAIN_HINT = "pip install torch==2.13.0 'cmkd-edge[train]'"


def run_without(blocked: tuple[str, ...], cases: dict[str, list[str]], tmp_path: Path) -> dict[str, dict]:
    """Run each case's ``cmkd-edge ARGS`` in one fresh interpreter lacking ``blocked``; exit code and output."""
    code = textwrap.dedent(f"""
        import json, sys
        for name in {blocked!r}:
            sys.modules[name] = None  # = not installed (see the module docstring)
        from click.testing import CliRunner
        from cmkd_edge.cli import main
        out = {{}}
        for key, args in {cases!r}.items():
            res = CliRunner().invoke(main, args)
            out[key] = {{"code": res.exit_code, "stdout": res.stdout, "stderr": res.stderr,
                        "exception": repr(res.exception) if res.exception and res.exit_code != 2 else None}}
        out["_loaded"] = [m for m in {blocked!r} if sys.modules.get(m) is not None]
        print(json.dumps(out))
    """)
    env = {"CMKD_EDGE_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_one_line(res: dict, *fragments: str) -> None:
    assert res["code"] == 2, res
    lines = res["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res["stderr"]
    assert "Traceback" not in res["stderr"] + res["stdout"]
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_every_verb_names_its_extra_on_the_base_install(bundle_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"not read: the check comes first")
    np.save(tmp_path / "p.npy", np.full((13, 16, 16), 1000, np.float32))
    b, t = str(bundle_dir), str(tmp_path)
    train_verbs = {
        "train-teacher": ["train-teacher", "--epochs", "1", "--out", f"{t}/r"],
        "distill": ["distill", "--teacher", str(ckpt), "--out", f"{t}/s"],
        "evaluate": ["evaluate", str(ckpt)],
        "export": ["export", str(ckpt), "--out", f"{t}/b"],
        "quantize": ["quantize", b],
        "demo": ["demo", "--workdir", f"{t}/demo"],
        "mfh synthetic": ["mfh", "synthetic", "--experiment", "gamma", "--seeds", "1"],
        "match": ["match", "--out", f"{t}/m.pt"],
        "diagnose": ["diagnose", "--teacher", str(ckpt), "--student", str(ckpt)],
    }
    cases = {
        **train_verbs,
        "compile": ["compile", b, "--target", "openvino"],
        "profile --plot": ["profile", b, "--plot", f"{t}/l.png", "--json", f"{t}/l.json"],
        "help": ["train-teacher", "--help"],
        "classify": ["classify", b, f"{t}/p.npy", "--json"],
        "profile --compare": ["profile", b, "--compare", "--warmup", "0", "--iterations", "2", "--json", "-"],
        # issue 9: a bundle is scored on saved arrays without torch; issue 21: and on a dataset, read by
        # the data layer's numpy half (here the recorded synthetic data, whose classes are not the bundle's)
        "evaluate npz": ["evaluate", b, "--data", f"{t}/test.npz", "--latency-iterations", "2", "--json"],
        "evaluate dataset": ["evaluate", b, "--split", "test"],
        # issue 21: GeoTIFFs need the [geo] extra (rasterio and its GDAL); chips and arrays do not
        "classify tif": ["classify", b, f"{t}/p.tif"],
    }
    (tmp_path / "p.tif").write_bytes(b"II*\x00not read: the check comes first")
    eurosat = Path(__file__).resolve().parents[3] / "shared" / "data" / "eurosat_ms_200"
    if eurosat.is_dir():  # a real labelled dataset on the base install
        import sys as _sys

        _sys.path.insert(0, str(Path(__file__).parent))
        from bundle_factory import make_bundle

        names = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                 "PermanentCrop", "Residential", "River", "SeaLake")
        eb = make_bundle(tmp_path / "eurosat-bundle", size=64, classes=10, class_names=names, openvino=False)
        geo = run_without(tuple(m for m in OPTIONAL if m != "rasterio"), {  # base + [geo]
            "evaluate eurosat": ["evaluate", str(eb), "--data", str(eurosat), "--split", "test",
                                 "--latency-iterations", "2", "--json"]}, tmp_path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "test.npz", x=rng.uniform(0, 3000, (12, 13, 16, 16)).astype(np.float32),
             labels=rng.integers(0, 3, 12))
    res = run_without(OPTIONAL, cases, tmp_path)
    ev = res["evaluate npz"]
    assert ev["code"] == 0, ev
    rows = json.loads(ev["stdout"])["rows"]
    assert [(r["backend"], r["artifact"], r["n"]) for r in rows] == [("onnxruntime", "onnx-fp32", 12)]
    assert rows[0]["difference"] == "reference" and rows[0]["p50_ms_batch1"] > 0
    assert_one_line(res["evaluate dataset"], "the data's classes", "differ from the bundle's")
    assert_one_line(res["classify tif"], "reading p.tif (a GeoTIFF) needs rasterio", "[geo]",
                    "pip install 'cmkd-edge[geo]'")
    if eurosat.is_dir():
        ev = geo["evaluate eurosat"]
        assert ev["code"] == 0, ev
        doc = json.loads(ev["stdout"])
        assert doc["split"] == "test" and [r["n"] for r in doc["rows"]] == [60]
    for verb in train_verbs:
        assert_one_line(res[verb], f"error: {verb} needs torch", "not installed (the [train] extra)", TRAIN_HINT)
    assert not (tmp_path / "r").exists() and not (tmp_path / "demo").exists()  # checked before any work
    assert_one_line(res["compile"], "openvino is not installed", "pip install 'cmkd-edge[openvino]'")
    # item 2: --plot is checked before profiling, and the hint is the smallest install, not [train]
    assert_one_line(res["profile --plot"], "profile --plot needs matplotlib", "[plot]", "pip install matplotlib")
    assert "[train]" not in res["profile --plot"]["stderr"] and not (tmp_path / "l.json").exists()
    assert res["help"]["code"] == 0 and "Example" in res["help"]["stdout"]
    # the runtime commands work, for real, in the same environment
    assert res["classify"]["code"] == 0, res["classify"]
    assert json.loads(res["classify"]["stdout"])["results"][0]["class"].startswith("class_")
    # item 3: --compare lists what it leaves out (the OpenVINO rows) and why, in the output and the JSON
    cmp = res["profile --compare"]
    assert cmp["code"] == 0, cmp
    doc = json.loads(cmp["stdout"])
    assert {(r["backend"], r["artifact"]) for r in doc["reports"]} == {("onnxruntime", "onnx-fp32")}
    skipped = {(s["backend"], s["artifact"]) for s in doc["skipped"]}
    assert skipped == {("openvino", "onnx-fp32"), ("openvino", "openvino-fp32")}
    assert all("pip install 'cmkd-edge[openvino]'" in s["why"] for s in doc["skipped"])
    assert "skips 2 artifact x backend pair(s) (2 rows)" in cmp["stderr"]
    assert "openvino-fp32 on openvino" in cmp["stderr"]
    assert res["_loaded"] == []


def test_openvino_extra_missing_alone(bundle_dir: Path, tmp_path: Path) -> None:
    """With torch present but not openvino/nncf: quantize --backend openvino says [openvino] up front."""
    pytest.importorskip("torch")
    res = run_without(("openvino", "nncf"), {
        "q": ["quantize", str(bundle_dir), "--backend", "openvino"],
        "p": ["profile", str(bundle_dir), "--backend", "openvino"],
    }, tmp_path)
    assert_one_line(res["q"], "quantize --backend openvino needs openvino and nncf", "[openvino]")
    assert_one_line(res["p"], "profile --backend openvino needs openvino", "pip install 'cmkd-edge[openvino]'")


def test_late_import_of_an_optional_package_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The root's safety net: an ImportError of an optional package the table did not foresee."""
    from cmkd_edge.cli._extras import missing_extra_error

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ImportError) as info:
        import tensorrt  # noqa: F401
    err = missing_extra_error(info.value, "compile")
    assert err is not None and err.exit_code == 2
    assert err.one_line().startswith("compile needs tensorrt, which is not installed (the [tensorrt] extra)")
    assert missing_extra_error(ImportError("x", name="yaml"), "x") is None  # not ours: stays a bug
