"""Multi-label end to end on real BigEarthNet pairs (issue 9, item 6): thresholds chosen on the
validation split travel in the manifest, the gate scores micro-F1 and per-class AP, evaluate and
classify report label sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from cmkd_edge.export.quantize import quantize_bundle
from cmkd_edge.export.student import export_checkpoint
from cmkd_edge.runtime.contract.bundle import open_bundle
from cmkd_edge.runtime.evaluate import evaluate_bundle

from cmkd_edge.checkpoint import Checkpoint, save_checkpoint
from cmkd_edge.cli import main
from cmkd_edge.models import build_model

BEN = Path(__file__).resolve().parents[3] / "shared" / "data" / "bigearthnet_mm_tiny"
pytestmark = pytest.mark.skipif(not BEN.is_dir(), reason=f"sample data absent: {BEN}")


@pytest.fixture(scope="module")
def ml_bundle(tmp_path_factory) -> Path:
    from cmkd_edge.data import open_dataset

    names = list(open_dataset(str(BEN), views=["sar"], split="train").class_names)
    spec = {"source": "s1", "source_bands": ["VV", "VH"], "source_units": "db", "select": [0, 1],
            "to_db": False, "clip": [-50.0, 30.0], "mean": [-12.0, -19.0], "std": [4.0, 5.0]}
    torch.manual_seed(0)
    net = build_model("mobilenetv2-tiny", 2, len(names), mean=spec["mean"], std=spec["std"], clip=spec["clip"])
    d = tmp_path_factory.mktemp("ml")
    save_checkpoint(d / "best.pt", Checkpoint.of(
        net.state_dict(), model=net.config, role="student", task="multilabel",
        class_names=names, view="sar", input_hw=[120, 120],
        view_info={"modality": "sar", "band_names": ["VV", "VH"], "units": "db", "synthetic": False},
        preprocess=spec, method="none", method_options={}, teacher=None, seed=0,
        command="test", epoch=1, metrics={}, data={"path": str(BEN)}))
    # the legacy exporter: a few seconds faster than dynamo for this test, same graph contract
    return export_checkpoint(d / "best.pt", d / "bundle", samples=4, batch=2, opset=17, exporter="legacy")


def test_thresholds_gate_evaluate_and_classify(ml_bundle: Path, tmp_path: Path):
    m = open_bundle(ml_bundle).manifest
    assert m.task == "multilabel" and len(m.output.thresholds) == len(m.class_names)
    how = m.provenance.thresholds
    assert how["chosen"] and how["split"] == "val" and how["n"] > 0
    rec = quantize_bundle(ml_bundle, precision="fp16", max_drop=100.0).to_dict()
    assert rec["gate"]["metric"] == "micro_f1" and rec["gate"]["thresholds"] == list(m.output.thresholds)
    fp16 = rec["rungs"][0]
    assert fp16["metric"] == "micro_f1" and "reason" in fp16 and "top1" not in fp16
    from cmkd_edge.export.samples import bundle_samples

    raw = bundle_samples(open_bundle(ml_bundle), None, "test")
    doc = evaluate_bundle(ml_bundle, raw.x, raw.labels, split="test", latency_iterations=0)
    assert doc["thresholds"] == pytest.approx(list(m.output.thresholds))
    assert all({"micro_f1", "macro_f1", "map", "drop_lo", "drop_hi"} <= set(r) for r in doc["rows"])
    np.save(tmp_path / "p.npy", raw.x[0])
    out = CliRunner().invoke(main, ["classify", str(ml_bundle), str(tmp_path / "p.npy"), "--json"])
    assert out.exit_code == 0, out.output
    r = json.loads(out.stdout)["results"][0]
    assert len(r["probabilities"]) == len(m.class_names)
    assert r["labels"] == [c for c in m.class_names if r["probabilities"][c] >= r["thresholds"][c]]
    every = CliRunner().invoke(main, ["classify", str(ml_bundle), str(tmp_path / "p.npy"), "--threshold", "0"])
    assert f"{len(m.class_names)} labels:" in every.stdout
