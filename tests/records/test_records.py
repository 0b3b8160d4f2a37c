"""The record layer: files an older cmkd-edge wrote still load, errors name the field and the
file, unknown keys survive, and no stage reads a record by string key (issue 24)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Annotated, Literal

import pytest
from cmkd_edge.runtime.contract.codec import Positive, Record, decode, encode
from cmkd_edge.runtime.contract.manifest import Manifest, read_manifest
from cmkd_edge.runtime.contract.records import CheckpointMeta, LabelsSeen, QuantRecord
from record_access import offences

from cmkd_edge.errors import BundleError, CheckpointError

STORED = Path(__file__).parent / "stored"
OLD_MANIFEST = STORED / "manifest-v1.json"
OLD_CHECKPOINT = STORED / "student-v1.pt"


def _non_null(d):
    """``d`` without null values (the writer leaves optional nulls out where a field says so)."""
    if isinstance(d, dict):
        return {k: _non_null(v) for k, v in d.items() if v is not None}
    if isinstance(d, list):
        return [_non_null(v) for v in d]
    return d


def test_old_manifest_loads_typed_and_round_trips() -> None:
    """A schema-1 manifest written before the records: every record typed, nothing lost."""
    m = read_manifest(OLD_MANIFEST)
    q = m.quant("onnxruntime", "int8")
    assert isinstance(q, QuantRecord) and q.accepted == "int8-minmax" and q.passed
    assert q.gate.split == "val" and q.gate.n == 96 and q.rungs[0].rung == "int8-minmax"
    assert q.rungs[0].extra["per_class_drop"]["Water"]["n"] == 16  # unknown to the record, kept
    assert q.extra["int8_types"]["name"] in ("U8S8", "S8S8")  # the backend's own part
    assert m.artifact("onnx-int8").rung == "int8-minmax" and m.artifact("onnx-int8").accuracy.metric == "top1"
    ir = m.artifact("openvino-ir-int8")
    assert ir.gate.evaluated and ir.gate.passed and ir.accuracy.backend == "openvino"
    assert m.provenance.data.split_file == "split.csv" and m.provenance.export.parity.top1_identical
    assert m.provenance.labels is None  # written before labels were recorded
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    old = json.loads(OLD_MANIFEST.read_text())
    assert _non_null(m.to_dict()) == _non_null(old)


def test_old_checkpoint_loads_typed(tmp_path: Path) -> None:
    """A checkpoint written before the records: typed metadata, same payload written back."""
    torch = pytest.importorskip("torch")
    from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

    ck = load_checkpoint(OLD_CHECKPOINT)
    meta = ck.meta
    assert meta.view == "sar" and meta.task == "multiclass" and meta.model.arch == "mobilenetv2-tiny"
    assert meta.preprocess.source_bands == ("VV", "VH") and meta.preprocess.has_stats
    assert meta.teacher is not None and meta.teacher.view == "ms" and meta.input_hw == (32, 32)
    assert meta.labels is None and meta.pairing is None  # issue 20's fields default for old files
    model_from_checkpoint(ck)
    original = torch.load(OLD_CHECKPOINT, weights_only=True)
    again = ck.payload()
    assert set(again) == set(original)
    assert all(again[k] == original[k] for k in original if k != "state_dict")
    save_checkpoint(tmp_path / "again.pt", ck)
    assert load_checkpoint(tmp_path / "again.pt").meta == meta


def test_manifest_error_names_field_and_file(tmp_path: Path) -> None:
    d = json.loads(OLD_MANIFEST.read_text())
    d["artifacts"][1]["opset"] = "eighteen"
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(BundleError) as err:
        read_manifest(tmp_path)
    line = err.value.one_line()
    assert "'artifacts[1].opset'" in line and "an integer or null" in line
    assert str(tmp_path / "manifest.json") in line and "\n" not in line
    d["artifacts"][1]["opset"] = 18
    d["quantization"]["onnxruntime:int8"]["rungs"][0]["passed"] = "yes"
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    where = r"'quantization\.onnxruntime:int8\.rungs\[0\]\.passed'"
    with pytest.raises(BundleError, match=where + " must be true or false"):
        read_manifest(tmp_path)


def test_checkpoint_error_names_field_and_file(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from cmkd_edge.checkpoint import load_checkpoint

    payload = torch.load(OLD_CHECKPOINT, weights_only=True)
    payload["preprocess"] = {**payload["preprocess"], "select": "0,1"}
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "bad.pt")
    line = err.value.one_line()
    assert "checkpoint field 'preprocess.select' must be a list of integers" in line
    assert str(tmp_path / "bad.pt") in line
    del payload["view"]
    payload["preprocess"] = torch.load(OLD_CHECKPOINT, weights_only=True)["preprocess"]
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="checkpoint field 'view' is missing"):
        load_checkpoint(tmp_path / "bad.pt")


def test_labels_seen_round_trip_in_checkpoint_and_provenance() -> None:
    """Issue 20's record: optional, typed, kept by the checkpoint and passed to the provenance."""
    meta = CheckpointMeta.from_dict({
        "model": {"arch": "aconv", "in_channels": 1, "num_classes": 3}, "task": "multiclass",
        "class_names": ["a", "b", "c"], "view": "chip",
        "preprocess": {"source": "chip", "source_bands": ["MAG"], "source_units": "magnitude_u8",
                       "select": [0]},
        "labels": {"n_train": 30, "n_labelled": 3, "n_unlabelled": 27, "fraction": 0.1, "label_seed": 1,
                   "source": "fraction", "per_class": [1, 1, 1], "used_unlabelled": True},
        "pairing": {"rule": "given"}})
    assert meta.labels == LabelsSeen("fraction", 30, 3, 27, True, (1, 1, 1), 0.1, 1)
    assert meta.pairing == {"rule": "given"} and "3 of 30 training labels" in meta.labels.summary()
    assert CheckpointMeta.from_dict(meta.to_dict()) == meta
    with pytest.raises(CheckpointError, match="'labels.source' is \"some\""):
        CheckpointMeta.from_dict({**meta.to_dict(), "labels": {**meta.labels.to_dict(), "source": "some"}})


@dataclasses.dataclass(frozen=True)
class _Probe(Record):
    kind: Literal["a", "b"]
    size: Annotated[int, Positive] | None = None
    pair: tuple[float, float] | None = None
    names: tuple[str, ...] = ()
    extra: dict = dataclasses.field(default_factory=dict, compare=False)


@pytest.mark.parametrize("data, needle", [
    ({"kind": "c"}, "'kind' is \"c\" (expected one of a, b)"),
    ({"kind": "a", "size": 0}, "'size' must be a positive integer or null"),
    ({"kind": "a", "size": True}, "'size' must be a positive integer or null"),
    ({"kind": "a", "pair": [1, 2, 3]}, "'pair' must be [lo, hi] or null"),
    ({"kind": "a", "names": ["x", 1]}, "'names[1]' must be a string"),
    ({}, "'kind' is missing"),
    ([], "must be an object"),
])
def test_codec_refuses_what_the_hints_refuse(data, needle) -> None:
    with pytest.raises(BundleError) as err:
        decode(_Probe, data, source="probe.json")
    assert needle in err.value.message and err.value.message.endswith("(in probe.json)")


def test_codec_converts_and_keeps_unknown_keys() -> None:
    p = decode(_Probe, {"kind": "b", "pair": [0, 1], "names": ["x"], "later": {"k": 1}})
    assert p.pair == (0.0, 1.0) and isinstance(p.pair[0], float) and p.names == ("x",)
    assert p.extra == {"later": {"k": 1}}
    assert encode(p) == {"kind": "b", "size": None, "pair": [0.0, 1.0], "names": ["x"], "later": {"k": 1}}
    with pytest.raises(BundleError, match="'names' must be a list of strings"):
        _Probe(kind="a", names=["x"])  # a writer's wrong type is refused before it reaches a file


def test_no_string_key_reads_of_stage_records() -> None:
    found = offences()
    assert found == [], "\n".join(found)


def test_the_grep_finds_what_it_forbids(tmp_path: Path) -> None:
    """Not a vacuous pass: each way of reading a record by key is found in a made-up tree."""
    (tmp_path / "export").mkdir()
    for folder in ("cmkd_edge", "runtime/contract", "benchmarks"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "export" / "x.py").write_text(
        'a = manifest["task"]\nb = ckpt["view"]\nc = ck.get("seed")\nd = m.provenance.get("view")\n'
        'e = art.extra["gate"]\nf = rec["rungs"]\ng = "onnx-int8"\nh = m.quantization["k"]\n')
    shutil.copy(Path(__file__), tmp_path / "runtime" / "contract" / "records.py")  # the layer is exempt
    assert len(offences(tmp_path)) == 8
    # the rest of the contract folder (manifest, bundle reader, specs) is not the record layer
    shutil.copy(tmp_path / "export" / "x.py", tmp_path / "runtime" / "contract" / "manifest.py")
    assert len(offences(tmp_path)) == 16
