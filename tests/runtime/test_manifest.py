"""Manifest schema: validation names the field, round trips, the writer API the export stage uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cmkd_edge.runtime.contract.manifest import Artifact, Manifest, hash_bundle_files, read_manifest, write_manifest
from cmkd_edge.runtime.contract.specs import InputSpec, OutputSpec, PreprocessSpec
from hypothesis import given, settings
from hypothesis import strategies as st

from cmkd_edge.errors import BundleError


def _dict(bundle_dir: Path) -> dict:
    return json.loads((bundle_dir / "manifest.json").read_text())


def test_round_trip(bundle_dir: Path) -> None:
    m = read_manifest(bundle_dir)
    assert Manifest.from_dict(m.to_dict()) == m
    assert m.to_dict() == _dict(bundle_dir)
    assert m.artifact("openvino-fp32").files == ("openvino/model.xml", "openvino/model.bin")


@pytest.mark.parametrize("path, field", [
    (("task",), "'task'"), (("input", "band_names"), "'input.band_names'"),
    (("output", "activation"), "'output.activation'"), (("files",), "'files'"),
    (("artifacts", 0, "format"), "'artifacts[0].format'"),
])
def test_missing_field_is_named(bundle_dir: Path, path: tuple, field: str) -> None:
    d = _dict(bundle_dir)
    target = d
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    with pytest.raises(BundleError, match=f"{field.replace('[', '.').replace(']', '.')}.* is missing"):
        Manifest.from_dict(d)


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_unknown_schema_version(bundle_dir: Path, version: object) -> None:
    d = _dict(bundle_dir)
    d["schema_version"] = version
    with pytest.raises(BundleError, match="schema_version"):
        Manifest.from_dict(d)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x.onnx", "a/../../x", "C:/x", "a\\b"])
def test_escaping_paths_refused(bundle_dir: Path, bad: str) -> None:
    d = _dict(bundle_dir)
    d["artifacts"][0]["path"] = bad
    d["artifacts"][0]["files"] = [bad]
    with pytest.raises(BundleError, match="escapes|relative"):
        Manifest.from_dict(d)


def test_bad_enum_and_shape(bundle_dir: Path) -> None:
    d = _dict(bundle_dir)
    d["input"]["units"] = "kelvin"
    with pytest.raises(BundleError, match="input.units"):
        Manifest.from_dict(d)
    d = _dict(bundle_dir)
    d["input"]["shape"] = [None, 12, 16, 16]
    with pytest.raises(BundleError, match="channels"):
        Manifest.from_dict(d)


def test_unknown_keys_survive(bundle_dir: Path) -> None:
    d = _dict(bundle_dir)
    d["future"] = {"a": 1}
    d["artifacts"][0]["new_field"] = "x"
    assert Manifest.from_dict(d).to_dict() == d


def test_write_manifest_hashes_every_file(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not really onnx")
    (tmp_path / "labels.txt").write_text("a\n")
    m = Manifest(task="multiclass", class_names=("a", "b"),
                 input=InputSpec(modality="sar", band_names=("VV", "VH"), units="db",
                                 shape=(None, 2, 8, 8)),
                 output=OutputSpec(), preprocess=PreprocessSpec("s1", ("VV", "VH"), "db", (0, 1)),
                 artifacts=(Artifact(id="onnx-fp32", path="model.onnx", format="onnx",
                                     precision="fp32", backend="onnxruntime", files=("model.onnx",)),))
    written = write_manifest(tmp_path, m)
    assert set(written.files) == {"model.onnx", "labels.txt"}
    assert written.files == hash_bundle_files(tmp_path)
    assert read_manifest(tmp_path) == written
    # a dict works too, and a missing artifact file is refused before anything is written
    d = written.to_dict()
    d["artifacts"][0]["files"] = ["model.onnx", "weights.bin"]
    with pytest.raises(BundleError, match="weights.bin"):
        write_manifest(tmp_path, Manifest.from_dict(d))
    assert read_manifest(tmp_path) == written


_names = st.text(st.characters(min_codepoint=65, max_codepoint=90), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(classes=st.lists(_names, min_size=1, max_size=5, unique=True),
       bands=st.lists(_names, min_size=1, max_size=4, unique=True),
       hw=st.tuples(st.integers(1, 512), st.integers(1, 512)),
       nodata=st.one_of(st.none(), st.floats(-1e4, 1e4, allow_nan=False)),
       task=st.sampled_from(["multiclass", "multilabel"]),
       precision=st.sampled_from(["fp32", "fp16", "int8"]),
       gate=st.one_of(st.none(), st.booleans()))
def test_round_trip_property(classes, bands, hw, nodata, task, precision, gate) -> None:
    m = Manifest(task=task, class_names=tuple(classes),
                 input=InputSpec(modality="optical", band_names=tuple(bands), units="reflectance_x1e4",
                                 shape=(None, len(bands), *hw), nodata=nodata),
                 output=OutputSpec(activation="sigmoid" if task == "multilabel" else "softmax"),
                 preprocess=PreprocessSpec("s2", tuple(bands), "reflectance_x1e4",
                                           tuple(range(len(bands)))),
                 artifacts=(Artifact(id="a", path="m.onnx", format="onnx", precision=precision,
                                     backend="onnxruntime", files=("m.onnx",), gate_passed=gate),),
                 files={"m.onnx": "0" * 64})
    again = Manifest.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m and again.to_dict() == m.to_dict()
