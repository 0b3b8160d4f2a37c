"""Tampered, incomplete and hostile bundles through the real CLI (``bundle --verify``, ``classify``,
``profile``): one line naming the file or field, exit 2, nothing written outside the target."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from .relhelp import assert_one_line_error, cli, tree_digest

PATCH = np.full((13, 16, 16), 1000, np.float32)


@pytest.fixture
def patch_npy(tmp_path: Path) -> Path:
    np.save(tmp_path / "patch.npy", PATCH)
    return tmp_path / "patch.npy"


def _all_consumers(bundle: Path, patch: Path) -> list[list[object]]:
    return [["bundle", bundle, "--verify"], ["classify", bundle, patch],
            ["profile", bundle, "--warmup", "0", "--iterations", "1"]]


def test_intact_bundle_verifies(factory_bundle: Path) -> None:
    res = cli("bundle", factory_bundle, "--verify")
    assert res.exit_code == 0 and res.stdout.startswith("ok: 1 files match their sha256")


def test_modified_artifact(bundle_copy: Path, patch_npy: Path) -> None:
    with open(bundle_copy / "model.onnx", "r+b") as fh:
        fh.seek(200)
        b = fh.read(1)
        fh.seek(200)
        fh.write(bytes([b[0] ^ 0x01]))  # one bit
    for args in _all_consumers(bundle_copy, patch_npy):
        assert_one_line_error(cli(*args), "'model.onnx' does not match its sha256")


def test_missing_artifact(bundle_copy: Path, patch_npy: Path) -> None:
    (bundle_copy / "model.onnx").unlink()
    for args in _all_consumers(bundle_copy, patch_npy):
        assert_one_line_error(cli(*args), "'model.onnx' is missing")


def test_extra_file_is_ignored_but_never_loaded(bundle_copy: Path, patch_npy: Path) -> None:
    """A stray file beside the model is not in the manifest: verify passes, and packing drops it."""
    (bundle_copy / "evil.onnx").write_bytes(b"not listed")
    assert cli("bundle", bundle_copy, "--verify").exit_code == 0
    res = cli("bundle", bundle_copy, "--pack", bundle_copy.parent / "b.tar.gz")
    assert res.exit_code == 0
    with tarfile.open(bundle_copy.parent / "b.tar.gz") as tf:
        assert sorted(tf.getnames()) == ["manifest.json", "model.onnx"]


@pytest.mark.parametrize("version", [2, 0, "1", None, 1.5])
def test_unknown_schema_version(bundle_copy: Path, patch_npy: Path, version: object) -> None:
    d = json.loads((bundle_copy / "manifest.json").read_text())
    d["schema_version"] = version
    (bundle_copy / "manifest.json").write_text(json.dumps(d))
    for args in _all_consumers(bundle_copy, patch_npy):
        assert_one_line_error(cli(*args), f"manifest schema_version {version!r} is not supported")


def test_no_schema_version(bundle_copy: Path) -> None:
    d = json.loads((bundle_copy / "manifest.json").read_text())
    del d["schema_version"]
    (bundle_copy / "manifest.json").write_text(json.dumps(d))
    assert_one_line_error(cli("bundle", bundle_copy, "--verify"), "'schema_version' is missing")


REQUIRED = [("task",), ("class_names",), ("input",), ("output",), ("preprocess",), ("artifacts",),
            ("files",), ("input", "modality"), ("input", "band_names"), ("input", "units"),
            ("input", "shape"), ("output", "activation"), ("artifacts", 0, "id"),
            ("artifacts", 0, "path"), ("artifacts", 0, "format"), ("artifacts", 0, "precision"),
            ("artifacts", 0, "backend")]


@pytest.mark.parametrize("path", REQUIRED, ids=lambda p: ".".join(map(str, p)))
def test_manifest_missing_field(bundle_copy: Path, patch_npy: Path, path: tuple) -> None:
    d = json.loads((bundle_copy / "manifest.json").read_text())
    target = d
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    (bundle_copy / "manifest.json").write_text(json.dumps(d))
    name = ".".join(str(k) for k in path).replace(".0.", "[0].")
    for args in _all_consumers(bundle_copy, patch_npy)[:2]:
        assert_one_line_error(cli(*args), f"'{name}' is missing")


@pytest.mark.parametrize("text, needle", [
    ("", "not readable JSON"), ("{not json", "not readable JSON"), ("[]", "not a JSON object"),
    ("\xff\xfe", "not readable JSON"),
])
def test_manifest_not_json(bundle_copy: Path, text: str, needle: str) -> None:
    (bundle_copy / "manifest.json").write_bytes(text.encode("latin-1"))
    assert_one_line_error(cli("bundle", bundle_copy, "--verify"), needle)


def test_no_manifest(bundle_copy: Path) -> None:
    (bundle_copy / "manifest.json").unlink()
    assert_one_line_error(cli("bundle", bundle_copy, "--verify"), "no manifest.json")


# -- hostile archives: nothing may be written outside the extraction directory -----------------------
def _tar_with(bundle: Path, out: Path, evil: tarfile.TarInfo, data: bytes | None) -> Path:
    with tarfile.open(out, "w:gz") as tf:
        for rel in ("manifest.json", "model.onnx"):
            tf.add(bundle / rel, arcname=rel)
        if data is not None:
            evil.size = len(data)
        tf.addfile(evil, io.BytesIO(data) if data is not None else None)
    return out


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


def _snapshot(*dirs: Path) -> dict[str, list[str]]:
    return {str(d): sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else [] for d in dirs}


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "nested-dotdot", "symlink", "symlink-dir",
                                  "hardlink", "fifo"])
def test_hostile_tar_member(factory_bundle: Path, tmp_path: Path, patch_npy: Path, kind: str,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CMKD_EDGE_CACHE", str(cache))
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    (victim_dir / "keep.txt").write_text("mine")
    abs_target = tmp_path / "abs_escape.txt"
    member, data = {
        "absolute": (_member(str(abs_target)), b"x"),
        "dotdot": (_member("../../../victim/keep.txt"), b"overwritten"),
        "nested-dotdot": (_member("sub/../../../../victim/new.txt"), b"x"),
        "symlink": (_member("model2.onnx", tarfile.SYMTYPE, str(victim_dir / "keep.txt")), None),
        "symlink-dir": (_member("sub", tarfile.SYMTYPE, str(victim_dir)), None),
        "hardlink": (_member("hard", tarfile.LNKTYPE, str(victim_dir / "keep.txt")), None),
        "fifo": (_member("pipe", tarfile.FIFOTYPE), None),
    }[kind]
    archive = _tar_with(factory_bundle, tmp_path / "evil.tar.gz", member, data)
    before = _snapshot(tmp_path / "victim")
    for args in _all_consumers(archive, patch_npy):
        assert_one_line_error(cli(*args), "archive member")
    assert _snapshot(tmp_path / "victim") == before
    assert (victim_dir / "keep.txt").read_text() == "mine"
    assert not abs_target.exists()
    # nothing left in the cache: no (half-)extracted bundle that a later run could pick up
    assert not list((cache / "bundles").glob("*")) if (cache / "bundles").exists() else True


@pytest.mark.parametrize("name, mode", [("../evil.txt", stat.S_IFREG | 0o644),
                                        ("/tmp/cmkd_rel_abs_zip.txt", stat.S_IFREG | 0o644),
                                        ("link.onnx", stat.S_IFLNK | 0o777)])
def test_hostile_zip_member(factory_bundle: Path, tmp_path: Path, patch_npy: Path, name: str,
                            mode: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMKD_EDGE_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel in ("manifest.json", "model.onnx"):
            zf.write(factory_bundle / rel, rel)
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, "/etc/passwd")
    for args in _all_consumers(archive, patch_npy)[:2]:
        assert_one_line_error(cli(*args), "archive member")
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/cmkd_rel_abs_zip.txt").exists()
    assert not any((tmp_path / "cache").rglob("link.onnx"))


def test_corrupt_archive(factory_bundle: Path, tmp_path: Path) -> None:
    res = cli("bundle", factory_bundle, "--pack", tmp_path / "b.tar.gz")
    assert res.exit_code == 0
    data = bytearray((tmp_path / "b.tar.gz").read_bytes())
    (tmp_path / "cut.tar.gz").write_bytes(bytes(data[: len(data) // 2]))
    assert_one_line_error(cli("bundle", tmp_path / "cut.tar.gz", "--verify"), "cut.tar.gz")
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not a zip")
    assert_one_line_error(cli("bundle", tmp_path / "junk.zip", "--verify"), "junk.zip")
    (tmp_path / "plain.txt").write_text("x")
    assert_one_line_error(cli("bundle", tmp_path / "plain.txt", "--verify"), "not a bundle")


def test_packed_bundle_tampered_after_extraction(factory_bundle: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The extraction cache is re-verified on every open, so tampering with it is caught."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CMKD_EDGE_CACHE", str(cache))
    assert cli("bundle", factory_bundle, "--pack", tmp_path / "b.zip").exit_code == 0
    assert cli("bundle", tmp_path / "b.zip", "--verify").exit_code == 0
    extracted = next((cache / "bundles").glob("*/model.onnx"))
    extracted.write_bytes(extracted.read_bytes()[:-1] + b"\x00")
    assert_one_line_error(cli("bundle", tmp_path / "b.zip", "--verify"), "does not match its sha256")


# -- ONNX external data ----------------------------------------------------------------------------
@pytest.mark.parametrize("location", ["../outside.bin", "/etc/hostname", "sub/../../outside.bin",
                                      "unlisted.bin"])
def test_onnx_external_data_outside_bundle(tmp_path: Path, patch_npy: Path, location: str) -> None:
    onnx = pytest.importorskip("onnx")
    from bundle_factory import make_bundle
    from cmkd_edge.runtime.contract.manifest import read_manifest, write_manifest
    from onnx.external_data_helper import convert_model_to_external_data

    root = make_bundle(tmp_path / "b", openvino=False)
    model = onnx.load(str(root / "model.onnx"))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin",
                                   size_threshold=0)
    onnx.save_model(model, str(root / "model.onnx"))
    if location == "../outside.bin" or location == "sub/../../outside.bin":
        (tmp_path / "outside.bin").write_bytes((root / "weights.bin").read_bytes())
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save_model(model, str(root / "model.onnx"))
    write_manifest(root, read_manifest(root))  # checksums are right: only the location is hostile
    digest = tree_digest(tmp_path)
    for args in _all_consumers(root, patch_npy):
        assert_one_line_error(cli(*args), "external data", "outside the bundle")
    assert tree_digest(tmp_path) == digest


# -- TensorRT engine from another device (the logic; no GPU here) ----------------------------------
def test_tensorrt_engine_from_another_device(bundle_copy: Path, patch_npy: Path) -> None:
    from cmkd_edge.runtime.backends.fingerprint import check_fingerprint
    from cmkd_edge.runtime.contract.manifest import Manifest, read_manifest, write_manifest

    built_on = {"tensorrt": "10.3.0.30", "gpu": "Orin", "compute_capability": "8.7"}
    here = {"tensorrt": "10.3.0.30", "gpu": "NVIDIA A100-SXM4-40GB", "compute_capability": "8.0"}
    check = check_fingerprint(built_on, here)
    assert not check.ok and "compute capability 8.7, this GPU is 8.0" in check.errors[0]
    assert any("running on" in w for w in check.warnings)
    check = check_fingerprint(built_on, {**built_on, "tensorrt": "8.6.1"})
    assert not check.ok and "TensorRT 10.3.0, this device has 8.6.1" in check.errors[0]
    # a bundle carrying such an engine: auto falls back to the ONNX on this CPU-only machine,
    # and asking for TensorRT explicitly is one clear line
    (bundle_copy / "model.plan").write_bytes(b"\x00engine from another device")
    d = read_manifest(bundle_copy).to_dict()
    d["artifacts"].insert(0, {"id": "trt-fp16", "path": "model.plan", "format": "tensorrt-plan",
                              "precision": "fp16", "backend": "tensorrt", "files": ["model.plan"],
                              "fingerprint": built_on})
    write_manifest(bundle_copy, Manifest.from_dict(d))
    res = cli("classify", bundle_copy, patch_npy, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["backend"] != "tensorrt"
    from cmkd_edge.runtime.backends import available

    if not available("tensorrt"):
        assert_one_line_error(cli("classify", bundle_copy, patch_npy, "--backend", "tensorrt"),
                              "backend 'tensorrt' is not available")
