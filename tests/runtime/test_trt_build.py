"""The one TensorRT builder: its policy as pure functions everywhere; the real build only where the
tensorrt package and a GPU exist (skipped with that reason elsewhere: no stand-in for TensorRT)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cmkd_edge.runtime.backends import available, trt_build
from cmkd_edge.runtime.backends.trt_build import batch_profile, builder_flags, default_timing_cache

from cmkd_edge.errors import ConfigError

ORIN = {"tensorrt": "10.3.0.30", "gpu": "Orin", "compute_capability": "8.7"}


def test_flags_per_precision():
    assert builder_flags("fp32") == ()
    assert builder_flags("fp16") == ("FP16",)
    assert builder_flags("int8") == ("INT8", "FP16")  # weakly typed Q/DQ needs INT8
    assert builder_flags("int8", strongly_typed=True) == ()
    with pytest.raises(ConfigError):
        builder_flags("int4")


def test_batch_profile_defaults_and_checks():
    assert batch_profile() == (1, 8, 8)
    assert batch_profile(max_batch=32) == (1, 32, 32)
    assert batch_profile(1, 4, 16) == (1, 4, 16)
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        batch_profile(1, 16, 8)


def test_timing_cache_is_per_user_and_per_device(tmp_path, monkeypatch):
    monkeypatch.setenv("CMKD_EDGE_CACHE", str(tmp_path))
    p = default_timing_cache(ORIN)
    assert p.parent == tmp_path / "tensorrt" and p.name == "timing-trt10.3.0-sm8.7.cache"
    assert default_timing_cache({**ORIN, "compute_capability": "8.0"}) != p
    assert default_timing_cache({**ORIN, "gpu": "Other Orin"}) == p  # same arch + version


NO_TRT = ("needs the tensorrt package and an NVIDIA GPU "
          "(not installable on this machine: NVIDIA's package host is unreachable)")


@pytest.mark.tensorrt
@pytest.mark.skipif(not available("tensorrt"), reason=NO_TRT)
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_build_engine_writes_plan_and_per_device_cache(tmp_path, monkeypatch, precision):  # pragma: no cover
    """On a GPU: the real builder writes a plan, its fingerprint and a timing cache keyed by the device."""
    from bundle_factory import build_onnx, quantize_int8

    monkeypatch.setenv("CMKD_EDGE_CACHE", str(tmp_path / "cache"))
    onnx_path = build_onnx(tmp_path / "m.onnx", bands=13, size=16)
    if precision == "int8":
        onnx_path = quantize_int8(onnx_path, tmp_path / "m.int8.onnx", bands=13, size=16)
    rec = trt_build.build_engine(onnx_path, tmp_path / "e.plan", precision, max_batch=16)
    assert (tmp_path / "e.plan").stat().st_size > 0
    assert rec["profile"] == {"min": 1, "opt": 16, "max": 16}
    assert Path(rec["timing_cache"]) == default_timing_cache(rec["fingerprint"])
    assert Path(rec["timing_cache"]).stat().st_size > 0
