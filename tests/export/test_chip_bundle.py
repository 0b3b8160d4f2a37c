"""Radar chips end to end: train a tiny aconv on chips, export with crop + dB in the graph, compare
the graph with the numpy reference, and classify a chip from the packed bundle without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from test_data_chips import make_chips  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module", params=[None, "chip:crop=24,scale=db,norm=mean"])
def chip_bundle(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
                ) -> tuple[Path, Path]:
    from cmkd_edge.export.student import export_checkpoint

    from cmkd_edge.distill.config import TrainConfig
    from cmkd_edge.distill.trainer import train

    root = tmp_path_factory.mktemp("chipdata")
    chips = make_chips(root / "chips", per_class=8)
    run = root / "run"
    # view omitted: chip data's own view (chip), cropped by --input-size; or a centred dB view
    train(TrainConfig(out=run, data=str(chips), view=request.param, input_size=24, arch="aconv",
                      arch_options={"width": 4}, epochs=1, batch_size=4, device="cpu", quiet=True))
    bundle = export_checkpoint(run / "best.pt", root / "bundle", samples=4, batch=2)
    return chips, bundle


def test_chip_bundle_graph_matches_the_numpy_reference(chip_bundle: tuple[Path, Path]) -> None:
    from cmkd_edge.runtime.classifier import Classifier
    from cmkd_edge.runtime.contract.manifest import read_manifest
    from cmkd_edge.runtime.formats.chips import find_chips, read_chips

    from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint

    chips, bundle = chip_bundle
    m = read_manifest(bundle)
    assert m.input.units == "magnitude_u8" and m.input.shape == (None, 1, 32, 32)
    assert m.preprocess.crop == (24, 24)
    assert m.provenance.view == "chip:crop=24" or m.preprocess.centre
    raw = read_chips(find_chips([chips / "jpeg" / "test"]))
    ckpt = load_checkpoint(bundle.parent / "run" / "best.pt")
    net = model_from_checkpoint(ckpt)
    with torch.no_grad():  # the reference: numpy preprocessing, then the network (clip + normalise)
        ref = torch.softmax(net(torch.from_numpy(m.preprocess.apply(raw, normalise=False))), 1).numpy()
    with Classifier.open(bundle, backend="onnxruntime") as clf:
        got = clf.predict(raw)
    np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("scale", ["db", "log", "db,norm=mean"])
def test_log_scales_in_the_graph(scale: str, tmp_path: Path) -> None:
    """The deploy module (crop -> dB/log1p -> clip [-> centre]) exported to ONNX equals
    PreprocessSpec.apply."""
    import onnxruntime as ort
    from cmkd_edge.export.onnx import build_deploy_module, export_onnx

    from cmkd_edge.data.views import parse_view
    from cmkd_edge.models import build_model

    view = parse_view(f"chip:crop=20,scale={scale}")
    spec = view.deploy_input(("MAG",)).with_stats([3.0], [2.0])
    net = build_model("aconv", 1, 3, mean=spec.mean, std=spec.std, clip=spec.clip_in_net,
                      width=4).eval()
    module = build_deploy_module(net, spec)
    raw = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28)).astype(np.float32)
    raw[0, 0, 10, 10] = 0.0  # a zero pixel: the dB floor, then the clip
    export_onnx(module, torch.from_numpy(raw[:2]), tmp_path / "m.onnx", exporter="legacy", opset=17)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": raw})[0]
    with torch.no_grad():
        ref = net(torch.from_numpy(spec.apply(raw, normalise=False))).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert spec.units == ("log1p_magnitude_u8" if scale == "log" else "db")
    if spec.centre:  # a gain of the 8-bit product (short of saturation) changes nothing
        dim = raw.clip(1, 200)
        np.testing.assert_allclose(spec.apply(dim * 1.25, normalise=False),
                                   spec.apply(dim, normalise=False), atol=1e-4)


def test_classify_a_chip_from_the_packed_bundle_without_torch(chip_bundle: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    """The device path: base install only (torch cannot be imported), a packed bundle, a chip file
    and a folder of chips through ``cmkd-edge classify`` (one JSON entry per chip file)."""
    from cmkd_edge.runtime.classifier import Classifier
    from cmkd_edge.runtime.contract.bundle import pack_bundle
    from cmkd_edge.runtime.formats.chips import find_chips, read_chips

    chips, bundle = chip_bundle
    archive = pack_bundle(bundle, tmp_path / "chip-bundle.tar.gz")
    files = find_chips([chips / "jpeg" / "test"])
    chip = files[0]
    with Classifier.open(bundle, backend="onnxruntime") as clf:
        probs = clf.predict(read_chips(files))
    want = [clf.class_names[k] for k in probs.argmax(1)]
    code = textwrap.dedent(f"""
        import importlib.abc, json, sys
        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is not installed on this device")
        sys.meta_path.insert(0, NoTorch())
        from click.testing import CliRunner
        from cmkd_edge.cli import main
        out = {{}}
        for key, target in (("cli", {str(chip)!r}), ("folder", {str(chips / 'jpeg' / 'test')!r})):
            res = CliRunner().invoke(main, ["classify", {str(archive)!r}, target, "--json",
                                            "--backend", "onnxruntime"], catch_exceptions=False)
            assert res.exit_code == 0, res.output
            out[key] = json.loads(res.stdout)["results"]
        print("RESULT", json.dumps(out))
        print("HEAVY", [m for m in ("torch", "onnx", "nncf") if m in sys.modules])
    """)
    env = {"CMKD_EDGE_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout
    got = json.loads(out.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert got["cli"][0]["input"] == chip.name and got["cli"][0]["class"] == want[0]
    assert abs(got["cli"][0]["probability"] - float(probs[0].max())) < 1e-4
    # a folder: one entry per chip file, named by its path under the folder, same classes
    assert [r["class"] for r in got["folder"]] == want
    assert [r["input"] for r in got["folder"]] == [f"test/{f.relative_to(chips / 'jpeg' / 'test').as_posix()}"
                                                    for f in files]
