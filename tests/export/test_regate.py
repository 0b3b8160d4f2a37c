"""evaluate --regate: the bundle's gate re-run on this device class, recorded outside the bundle,
and precision auto never picking an artifact that failed here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from cmkd_edge.export.quantize import quantize_bundle
from cmkd_edge.runtime import Classifier
from cmkd_edge.runtime.contract.bundle import open_bundle
from cmkd_edge.runtime.device_gates import device_class, record, verdicts
from test_quantize import _sets

from cmkd_edge.cli import main


def test_regate_records_this_device_class_and_auto_respects_it(optical_bundle: Path, tmp_path: Path,
                                                               monkeypatch) -> None:
    b = Path(shutil.copytree(optical_bundle, tmp_path / "bundle"))
    cal, val = _sets(b)
    quantize_bundle(b, backend="onnxruntime", calib_data=cal, val_data=val, max_drop=100.0, qat_epochs=0)
    files = {p: p.read_bytes() for p in b.rglob("*") if p.is_file()}
    np.savez(tmp_path / "val.npz", x=val.x, labels=val.labels)
    bundle = open_bundle(b)
    # before any regate: auto may pick the INT8 artifact, and says it was gated elsewhere only
    clf = Classifier.open(b, probe=False, backend="onnxruntime")
    assert clf.artifact.id == "onnx-int8"
    gates = clf.selection["device_gates"]
    assert gates["device_class"] == device_class() and "gated where it was quantized" in gates["note"]
    opened: list[tuple[str, str]] = []
    real_open = Classifier.open.__func__

    def counting_open(cls, *args, **kwargs):
        clf = real_open(cls, *args, **kwargs)
        opened.append((clf.backend, clf.artifact.id))
        return clf

    monkeypatch.setattr(Classifier, "open", classmethod(counting_open))
    res = CliRunner().invoke(main, ["evaluate", str(b), "--data", str(tmp_path / "val.npz"), "--split", "val",
                                    "--regate", "--latency-iterations", "0", "--json"])
    assert res.exit_code == 0, res.output
    # the regate judges the logits the evaluation computed: every artifact x backend runs once
    assert ("onnxruntime", "onnx-int8") in opened and len(opened) == len(set(opened))
    monkeypatch.undo()
    doc = json.loads(res.stdout)["regate"]
    v = doc["verdicts"]["onnxruntime:onnx-int8"]
    assert v["passed"] and v["n"] == len(val) and v["reference"] == "onnxruntime:onnx-fp32"
    assert verdicts(bundle)["onnxruntime:onnx-int8"]["passed"]
    assert {p: p.read_bytes() for p in b.rglob("*") if p.is_file()} == files  # the bundle is untouched
    clf = Classifier.open(b, probe=False, backend="onnxruntime")
    assert clf.artifact.id == "onnx-int8" and "note" not in clf.selection["device_gates"]
    # a verdict of failure on this device class (as an ARM board records for OpenVINO's INT8 IR)
    record(bundle, {"onnxruntime:onnx-int8": {"passed": False, "reason": "loses 9 points here"}})
    clf = Classifier.open(b, probe=False, backend="onnxruntime")
    assert clf.artifact.id == "onnx-fp32"
    assert clf.selection["device_gates"]["failed_here"] == ["onnxruntime:onnx-int8 (loses 9 points here)"]
    # asked for by name, it still runs: the verdict screens only the automatic choice
    assert Classifier.open(b, backend="onnxruntime", artifact="onnx-int8").artifact.id == "onnx-int8"
    # another device class's verdicts do not apply here
    assert verdicts(bundle, "some-other-class") == {}


def test_regate_of_a_checkpoint_is_one_line(tmp_path: Path) -> None:
    ck = tmp_path / "best.pt"
    ck.write_bytes(b"x")
    res = CliRunner().invoke(main, ["evaluate", str(ck), "--regate"])
    assert res.exit_code == 2 and "--regate re-runs a bundle's accuracy gate" in res.output
