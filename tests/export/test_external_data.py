"""An external labelled test set is scored on its own split, for a checkpoint and a bundle alike
(issue 9: ``evaluate CHECKPOINT --data OTHER`` refused with "split file ... does not match")."""

from __future__ import annotations

from pathlib import Path

from cmkd_edge.export.samples import bundle_samples
from cmkd_edge.export.student import export_checkpoint
from cmkd_edge.runtime.contract.bundle import open_bundle
from cmkd_edge.runtime.evaluate import evaluate_bundle
from test_provenance_gating import _run_dir

from cmkd_edge.distill.evaluation import evaluate_checkpoint

OTHER = "synthetic:per_class=5,size=32,seed=7"  # other samples, its own (generator) split


def test_checkpoint_and_bundle_score_external_data_on_its_own_split(tmp_path: Path):
    run = _run_dir(tmp_path, swap_split=True)
    own = evaluate_checkpoint(run / "best.pt", None, "test")
    assert own["split_table"] == "training run (split.csv)"
    ext = evaluate_checkpoint(run / "best.pt", OTHER, "test")
    assert ext["split_table"].startswith("the data's own") and ext["n"] == 6 * 1  # 5 per class: 1 test each
    b = open_bundle(export_checkpoint(run / "best.pt", tmp_path / "b", samples=4, batch=2))
    raw_own = bundle_samples(b, None, "test")
    assert raw_own.info["split_table"] == "training run (bundle split.csv)" and len(raw_own) == own["n"]
    raw = bundle_samples(b, OTHER, "test")
    assert raw.info["split_table"] == "the data's own" and len(raw) == ext["n"]
    doc = evaluate_bundle(b, raw.x, raw.labels, split="test", data=OTHER, latency_iterations=0)
    row = next(r for r in doc["rows"] if r["artifact"] == "onnx-fp32" and r["backend"] == "onnxruntime")
    assert abs(row["accuracy"] - ext["accuracy"]) < 1e-9  # the runtime agrees with torch on the same split
