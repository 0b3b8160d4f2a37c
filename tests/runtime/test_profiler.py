"""Latency report: one schema for every backend, writers, plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cmkd_edge.runtime import profiler
from cmkd_edge.runtime.backends import available

REPORT_KEYS = {"schema", "schema_version", "backend", "precision", "artifact", "format", "threads",
               "batch", "input_shape", "cold_start", "warmup", "iterations", "model_only",
               "end_to_end", "peak_rss_mb", "accuracy", "device", "command", "versions", "bundle",
               "runner"}
STATS = {"min_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms",
         "throughput_items_per_s"}


def test_stats() -> None:
    s = profiler.latency_stats(np.arange(1, 101, dtype=float), batch=4)
    assert s["min_ms"] == 1 and s["max_ms"] == 100 and s["p50_ms"] == 50.5
    assert s["p99_ms"] == pytest.approx(99.01) and s["throughput_items_per_s"] == pytest.approx(4000 / 50.5)


def test_compare_reports_share_one_schema(bundle_dir: Path, tmp_path: Path) -> None:
    reports = profiler.profile_bundle(bundle_dir, batches=(1, 3), warmup=2, iterations=5,
                                      threads=1, compare=True, command="cmkd-edge profile x")
    pairs = {(r.backend, r.artifact) for r in reports}
    expected = {("onnxruntime", "onnx-fp32")}
    if available("openvino"):
        expected |= {("openvino", "onnx-fp32"), ("openvino", "openvino-fp32")}
    assert pairs == expected and {r.batch for r in reports} == {1, 3}
    for r in reports:
        d = r.to_dict()
        assert set(d) == REPORT_KEYS
        assert set(d["model_only"]) == STATS == set(d["end_to_end"])
        assert set(d["cold_start"]) == {"verify_ms", "load_ms", "first_inference_ms", "total_ms"}
        assert d["warmup"] == 2 and d["iterations"] == 5 and d["threads"] == 1
        assert d["device"]["cpu"]["flags"] and "avx2" in d["device"]["cpu"]["flags"]
        assert d["command"] == "cmkd-edge profile x" and d["peak_rss_mb"] > 10
        assert d["model_only"]["min_ms"] <= d["model_only"]["p50_ms"] <= d["model_only"]["max_ms"]
        assert d["accuracy"] == {"top1": 0.91, "split": "test"}
    profiler.write_json(reports, tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["schema"] == "cmkd-edge/latency-report" and len(data["reports"]) == len(reports)
    profiler.write_csv(reports, tmp_path / "r.csv")
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == len(reports) and float(rows[0]["end_to_end_p50_ms"]) > 0
    pytest.importorskip("matplotlib")
    png = profiler.plot_reports(reports, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_single_profile_uses_auto_choice(int8_bundle: Path) -> None:
    (r,) = profiler.profile_bundle(int8_bundle, warmup=1, iterations=3)
    assert (r.backend, r.precision) == ("onnxruntime", "int8")


def test_single_profile_loads_the_model_once_per_report(int8_bundle: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The reported cold start must be the first load, not a warm reload after choosing."""
    from cmkd_edge.runtime.backends import specs

    loads: list[str] = []

    def counting(spec):  # wraps the declared runner factory hook of one backend
        real = spec.runner.for_artifact

        def hook(b, a, *args, **kwargs):
            loads.append(f"{spec.name}:{a.id}")
            return real(b, a, *args, **kwargs)

        return classmethod(lambda cls, *args, **kwargs: hook(*args, **kwargs))

    for spec in specs():
        monkeypatch.setattr(spec.runner, "for_artifact", counting(spec))
    reports = profiler.profile_bundle(int8_bundle, batches=(1, 2), warmup=1, iterations=2)
    assert [r.batch for r in reports] == [1, 2]
    assert len(loads) == 2 and loads[0] == loads[1] == f"{reports[0].backend}:{reports[0].artifact}"
    assert {(r.backend, r.precision) for r in reports} == {("onnxruntime", "int8")}
