"""The stdlib-only core every layer shares: registry, errors, atomic writes, checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cmkd_edge._registry import Registry
from cmkd_edge.errors import BackendUnavailableError, CheckpointError, CmkdError, UnknownNameError
from cmkd_edge.fsutil import atomic_open, atomic_write_json, sha256_file


def test_registry_register_get_and_errors():
    reg: Registry = Registry("thing")

    @reg.register(help="a one")
    def one():
        return 1

    assert reg.get("one") is one and reg.names() == ["one"] and reg.help("one") == "a one"
    with pytest.raises(ValueError, match="duplicate"):
        reg.add("one", one)
    with pytest.raises(UnknownNameError, match="unknown thing 'two'") as info:
        reg.get("two")
    assert "one" in info.value.one_line()


def test_registry_lazy_entry_imports_only_when_chosen():
    reg: Registry = Registry("backend")
    reg.add("json", "json:dumps")
    reg.add("missing", "cmkd_edge_no_such_module:Thing")
    assert "missing" in reg.names()  # listing imports nothing
    import json

    assert reg.get("json") is json.dumps
    with pytest.raises(BackendUnavailableError, match="not installed"):
        reg.get("missing")


def test_error_one_line_collapses_whitespace():
    err = CmkdError("bad\n  thing", hint="do\nthat")
    assert err.one_line() == "bad thing; do that" and err.exit_code == 2


def test_atomic_open_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.json"
    atomic_write_json(target, {"a": 1})
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write(b"half-written")
            raise RuntimeError("killed midway")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temp file left behind


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    p = tmp_path / "x.bin"
    data = os.urandom(3 << 20)
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


def _tiny_checkpoint():
    from cmkd_edge.models import build_model

    net = build_model("resnet-narrow", 3, 4, mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0], width=4)
    from cmkd_edge.checkpoint import Checkpoint

    return net, Checkpoint.of(
        net.state_dict(), model=net.config, task="multiclass", class_names=["a", "b", "c", "d"], view="rgb",
        preprocess={"source": "s2", "source_bands": ["B02", "B03", "B04", "B08"],
                    "source_units": "reflectance_x1e4", "select": [3, 2, 1], "clip": None,
                    "mean": [1, 2, 3], "std": [2, 2, 2]},
        seed=0, command="test")


def test_checkpoint_round_trip_rebuilds_identical_model(tmp_path):
    import torch

    from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

    net, ckpt = _tiny_checkpoint()
    save_checkpoint(tmp_path / "best.pt", ckpt)
    loaded = load_checkpoint(tmp_path)  # a run directory resolves to best.pt
    rebuilt = model_from_checkpoint(loaded)
    x = torch.rand(2, 3, 16, 16) * 5
    net.eval()
    assert torch.equal(net(x), rebuilt(x))


def test_checkpoint_refuses_pickle_payload_without_running_it(tmp_path):
    from cmkd_edge.checkpoint import load_checkpoint

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    code = (
        "import os, torch\n"
        "class P:\n"
        f"    def __reduce__(self): return (os.system, ('touch {marker}',))\n"
        f"torch.save({{'format': 'cmkd-edge/checkpoint', 'x': P()}}, {str(evil)!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(CheckpointError, match="not a safe cmkd-edge checkpoint"):
        load_checkpoint(evil)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_checkpoint_refuses_garbage(tmp_path, content):
    from cmkd_edge.checkpoint import load_checkpoint

    p = tmp_path / "x.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match="x.pt"):
        load_checkpoint(p)


def test_checkpoint_refuses_foreign_dict(tmp_path):
    import torch

    from cmkd_edge.checkpoint import load_checkpoint

    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a cmkd-edge checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_registry_install_hint_names_only_an_existing_extra():
    from importlib import metadata

    try:
        extras = metadata.metadata("cmkd-edge").get_all("Provides-Extra") or []
    except metadata.PackageNotFoundError:
        extras = []
    reg: Registry = Registry("backend")
    reg.add("openvino", "cmkd_edge_no_such_module:Runner")
    reg.add("sembridge", "cmkd_edge_no_such_module:Method")
    with pytest.raises(BackendUnavailableError) as info:
        reg.get("sembridge")  # no extra has that name: the hint names the missing module instead
    assert "cmkd-edge[" not in info.value.one_line() and "cmkd_edge_no_such_module" in info.value.one_line()
    with pytest.raises(BackendUnavailableError) as info:
        reg.get("openvino")
    assert ("cmkd-edge[openvino]" in info.value.one_line()) == ("openvino" in extras)
    own: Registry = Registry("method", install_hint="pip install 'cmkd-edge[train]'")
    own.add("kd", "cmkd_edge_no_such_module:LogitKD")
    with pytest.raises(BackendUnavailableError) as info:
        own.get("kd")
    assert "cmkd-edge[train]" in info.value.one_line()


def test_every_registry_kind_resolves():
    from cmkd_edge._registry import REGISTRIES, get_registry

    for kind in REGISTRIES:
        assert get_registry(kind).names()
    with pytest.raises(UnknownNameError, match="unknown registry"):
        get_registry("nope")


def test_bundle_is_not_a_checkpoint(tmp_path) -> None:
    """evaluate/export/distill given a bundle or model: say what it is, not torch's weights_only text."""
    from click.testing import CliRunner

    from cmkd_edge.checkpoint import load_checkpoint
    from cmkd_edge.cli import main

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    (tmp_path / "b.tar.gz").write_bytes(b"\x1f\x8b\x08\x00")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    for path in (bundle, tmp_path / "b.tar.gz", tmp_path / "model.onnx"):
        with pytest.raises(CheckpointError, match="is a deployment bundle or model, not a training checkpoint"):
            load_checkpoint(path)
    # evaluate scores bundles (issue 9): a damaged archive is named as such; a bare .onnx still
    # gets the checkpoint message
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "b.tar.gz")])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert "weights" not in lines[0] and "truncated or corrupt" in lines[0]
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "model.onnx")])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and "best.pt" in lines[0] and "weights" not in lines[0]
