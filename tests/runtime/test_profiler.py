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
               "runner", "rss"}
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


def test_model_only_is_timed_inside_each_end_to_end_call(bundle_dir: Path) -> None:
    """Same loop, same calls: no row can report end-to-end faster than model-only (issue 13, item 6)."""
    reports = profiler.profile_bundle(bundle_dir, batches=(1, 4), warmup=2, iterations=30, compare=True)
    for r in reports:
        assert r.model_only_samples is not None and r.end_to_end_samples is not None
        assert (r.model_only_samples <= r.end_to_end_samples).all(), (r.backend, r.artifact, r.batch)
        assert r.model_only["p50_ms"] <= r.end_to_end["p50_ms"]
        assert r.model_only["min_ms"] > 0


def test_rss_is_measured_per_row_not_as_the_process_peak(bundle_dir: Path) -> None:
    """A big allocation freed before the row must not show up in the row's RSS (it did: VmHWM only grows)."""
    if not profiler.reset_peak_rss():
        pytest.skip("this OS cannot reset the peak-RSS counter; rss.added_mb is None there by design")
    big = np.ones((300 << 20) // 8)  # 300 MiB, touched
    held = profiler.peak_rss_mb()
    del big
    r = profiler.profile_one(profiler.open_bundle(bundle_dir), "onnxruntime", "onnx-fp32", 1,
                             warmup=1, iterations=5)
    assert held - r.rss["peak_mb"] > 200, (held, r.rss)
    assert r.peak_rss_mb == r.rss["peak_mb"] and r.rss["peak_mb"] >= r.rss["baseline_mb"]
    assert 0 <= r.rss["added_mb"] < 300 and "row start" in r.rss["method"]
    row = profiler.render_table([r]).columns
    assert any(c.header == "RSS added MiB" for c in row)


def test_plot_panels_show_one_thing_each(bundle_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    import dataclasses

    import matplotlib.pyplot as plt

    reports = profiler.profile_bundle(bundle_dir, batches=(1, 3), warmup=1, iterations=4, compare=True)
    # an artifact the manifest records no accuracy for (a compiled FP32 IR, typically): the first row
    reports[0] = dataclasses.replace(reports[0], accuracy=None)
    fig = profiler.latency_figure(reports)
    try:
        *boxes, acc = fig.axes
        assert len(boxes) == 2  # one panel per batch size: batch-1 and batch-3 calls never share a box plot
        for ax, n in zip(boxes, (1, 3), strict=True):
            assert ax.get_title().startswith(f"batch {n} ")
            assert ax.get_ylabel() == "end-to-end latency per image (ms)"
            assert len(ax.get_xticklabels()) == sum(r.batch == n for r in reports)
        assert "per image at batch 1" in acc.get_xlabel()
        # the factory records top1 0.91 on the test split for onnx-fp32, without n
        assert "test split, n not recorded" in acc.get_ylabel() and "%" in acc.get_ylabel()
        points = [tuple(c.get_offsets()[0]) for c in acc.collections]
        assert {round(y, 3) for _, y in points} == {91.0}
        fp32_rows = [r for r in reports if r.batch == 1 and r.accuracy]
        assert len(points) == len(fp32_rows)
        unmeasured = [r for r in reports if r.batch == 1 and not r.accuracy]
        assert unmeasured
        texts = " ".join(t.get_text() for t in acc.texts)
        for r in unmeasured:  # named, not dropped
            assert f"{r.backend} {r.artifact}" in texts and "accuracy not measured" in texts
    finally:
        plt.close(fig)
