"""Bundle integrity and safe extraction: tampering, missing files, unsafe archives, external data."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from cmkd_edge.runtime.classifier import Classifier
from cmkd_edge.runtime.contract._onnxproto import external_data_locations
from cmkd_edge.runtime.contract.bundle import extract_archive, open_bundle, pack_bundle
from cmkd_edge.runtime.contract.manifest import read_manifest, write_manifest

from cmkd_edge.errors import BundleError


def test_verified_bundle_opens(bundle_dir: Path) -> None:
    b = open_bundle(bundle_dir)
    assert b.root == bundle_dir and b.manifest.files


@pytest.mark.parametrize("victim", ["model.onnx", "openvino/model.bin"])
def test_tampered_file_refused(bundle_copy: Path, victim: str) -> None:
    with open(bundle_copy / victim, "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BundleError, match=f"'{victim}' does not match its sha256"):
        open_bundle(bundle_copy)
    with pytest.raises(BundleError, match="sha256"):
        Classifier.open(bundle_copy)


def test_missing_file_refused(bundle_copy: Path) -> None:
    (bundle_copy / "openvino" / "model.bin").unlink()
    with pytest.raises(BundleError, match="'openvino/model.bin' is missing"):
        open_bundle(bundle_copy)


def test_symlinked_file_refused(bundle_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    (bundle_copy / "model.onnx").rename(outside)
    (bundle_copy / "model.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="symlink|outside"):
        open_bundle(bundle_copy)


def test_unlisted_artifact_file_refused(bundle_copy: Path) -> None:
    d = json.loads((bundle_copy / "manifest.json").read_text())
    del d["files"]["openvino/model.bin"]
    (bundle_copy / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(BundleError, match="no sha256"):
        open_bundle(bundle_copy)


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_pack_round_trip(bundle_dir: Path, tmp_path: Path, suffix: str) -> None:
    (tmp_path / "stray.txt").write_text("not in the bundle")
    archive = pack_bundle(bundle_dir, tmp_path / f"b{suffix}")
    again = pack_bundle(bundle_dir, tmp_path / f"b2{suffix}")
    assert archive.read_bytes() == again.read_bytes()  # reproducible
    packed = open_bundle(archive, cache_dir=tmp_path / "cache")
    assert packed.manifest == read_manifest(bundle_dir)
    assert str(packed.root).startswith(str(tmp_path / "cache"))
    x = np.random.default_rng(0).uniform(0, 10000, (3, 13, 16, 16)).astype(np.float32)
    with Classifier.open(bundle_dir, backend="onnxruntime") as a, \
            Classifier.open(archive, backend="onnxruntime", cache_dir=tmp_path / "cache") as b:
        np.testing.assert_array_equal(a.predict(x), b.predict(x))
    # the cache is reused, and still verified
    (packed.root / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="sha256"):
        open_bundle(archive, cache_dir=tmp_path / "cache")


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize("member", [
    _info("/tmp/cmkd_evil_abs"), _info("../cmkd_evil_up"), _info("a/../../cmkd_evil_up2"),
    _info("link", tarfile.SYMTYPE, "/etc/passwd"), _info("hard", tarfile.LNKTYPE, "manifest.json"),
    _info("dev", tarfile.CHRTYPE), _info("fifo", tarfile.FIFOTYPE),
])
def test_unsafe_tar_members_refused(tmp_path: Path, member: tarfile.TarInfo) -> None:
    dest = tmp_path / "x" / "dest"
    dest.mkdir(parents=True)
    data = b"evil" if member.type == tarfile.REGTYPE else None
    archive = _tar(tmp_path / "evil.tar.gz", [(_info("manifest.json"), b"{}"), (member, data)])
    with pytest.raises(BundleError, match="unsafe|link or special"):
        extract_archive(archive, dest)
    assert list(dest.iterdir()) == []  # checked before anything was written
    assert not (tmp_path / "x" / "cmkd_evil_up").exists()
    assert not Path("/tmp/cmkd_evil_abs").exists()
    with pytest.raises(BundleError):
        open_bundle(archive, cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache" / "bundles").glob("*/*"))


@pytest.mark.parametrize("name, mode", [("../evil", stat.S_IFREG | 0o644), ("/abs/evil", stat.S_IFREG),
                                        ("link", stat.S_IFLNK | 0o777)])
def test_unsafe_zip_members_refused(tmp_path: Path, name: str, mode: int) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("manifest.json", "{}")
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, "/etc/passwd")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BundleError, match="unsafe|link"):
        extract_archive(archive, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "evil").exists()


def test_duplicate_member_refused(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "dup.tar.gz", [(_info("a"), b"1"), (_info("a"), b"2")])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BundleError, match="twice"):
        extract_archive(archive, dest)


def _external_data_bundle(root: Path, location: str) -> Path:
    """A bundle whose model.onnx keeps its weights in external data at ``location``."""
    import onnx
    from bundle_factory import make_bundle
    from onnx.external_data_helper import convert_model_to_external_data

    make_bundle(root, openvino=False)
    model = onnx.load(str(root / "model.onnx"))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin",
                                   size_threshold=0)
    onnx.save_model(model, str(root / "model.onnx"))
    if location != "weights.bin":
        for t in model.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        onnx.save_model(model, str(root / "model.onnx"))
    write_manifest(root, read_manifest(root))
    return root


def test_external_data_inside_bundle_runs(tmp_path: Path) -> None:
    root = _external_data_bundle(tmp_path / "b", "weights.bin")
    assert set(external_data_locations(root / "model.onnx")) == {"weights.bin"}
    with Classifier.open(root, backend="onnxruntime") as clf:
        assert clf.predict(np.full((1, 13, 16, 16), 1000, np.float32)).shape == (1, 4)


@pytest.mark.parametrize("location", ["../weights.bin", "/tmp/weights.bin", "sub/../../weights.bin",
                                      "not_listed.bin"])
def test_external_data_outside_bundle_refused(tmp_path: Path, location: str) -> None:
    root = _external_data_bundle(tmp_path / "b", location)
    with pytest.raises(BundleError, match="external data .* outside"):
        open_bundle(root)


def test_onnxproto_matches_onnx(tmp_path: Path) -> None:
    """The wire-format walker finds exactly the locations onnx itself reports (incl. subgraphs)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def ext(name: str, loc: str) -> TensorProto:
        t = numpy_helper.from_array(np.ones(4, np.float32), name)
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", loc), ("offset", "0"), ("length", "16")):
            e = t.external_data.add()
            e.key, e.value = k, v
        return t

    sub = helper.make_graph([helper.make_node("Constant", [], ["c"], value=ext("sv", "sub.bin"))],
                            "then", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])])
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=sub, else_branch=sub)], "g",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [ext("w", "main.bin")])
    model = helper.make_model(graph)
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path))
    assert sorted(external_data_locations(path)) == ["main.bin", "sub.bin", "sub.bin"]
    (tmp_path / "junk.onnx").write_bytes(b"\x3a\xff\xff\xff\x0f" + b"x" * 16)  # graph past the end
    with pytest.raises(BundleError, match="not a valid ONNX"):
        external_data_locations(tmp_path / "junk.onnx")
