"""TensorRT cache keys: one place makes them (``fingerprint.py``), without a GPU.

Moved from ``classifier._tensorrt_runner`` (the rebuilt-plan key) and ``trt_build.fingerprint_key``
(the timing-cache key), which used to compute them separately.
"""

from __future__ import annotations

import ast
from pathlib import Path

from cmkd_edge.runtime.backends.fingerprint import compute_capability, engine_key, fingerprint_key, trt_version
from cmkd_edge.runtime.backends.trt_build import default_engine_path, default_timing_cache

ORIN = {"tensorrt": "10.3.0.30", "gpu": "Orin", "compute_capability": "8.7"}
RUNTIME = Path(__file__).resolve().parents[2] / "runtime"


def test_normalisers() -> None:
    assert trt_version("10.3.0.30") == "10.3.0" and trt_version("10") == "10.0.0" and trt_version("") == ""
    assert compute_capability((8, 7)) == compute_capability("sm_87") == compute_capability("87") == "8.7"


def test_one_key_for_plans_and_timing_caches(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CMKD_EDGE_CACHE", str(tmp_path))
    assert fingerprint_key(ORIN) == "trt10.3.0-sm8.7"
    assert fingerprint_key({"tensorrt": "10.3/x", "compute_capability": "8.7"}) == "trt10.3.0-sm8.7"
    sha = "ab" * 32
    assert engine_key(sha, "fp16", ORIN) == f"{sha[:16]}-fp16-trt10.3.0-sm8.7"
    assert engine_key(sha, "fp16", {**ORIN, "tensorrt": "10.3.0.26", "gpu": "Other"}) == engine_key(
        sha, "fp16", ORIN)  # build number and GPU model do not change what a plan is valid for
    assert engine_key(sha, "int8", ORIN) != engine_key(sha, "fp16", ORIN)
    plan = default_engine_path(sha, "fp16", ORIN)
    assert plan == tmp_path / "engines" / f"{engine_key(sha, 'fp16', ORIN)}.plan"
    assert default_timing_cache(ORIN).name == f"timing-{fingerprint_key(ORIN)}.cache"


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``from X import names`` in ``path``, relative ones resolved."""
    parts = ["cmkd_edge", "runtime", *path.relative_to(RUNTIME).with_suffix("").parts]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = parts[:len(parts) - node.level] if node.level else []
            out.append((".".join([*base, *(node.module or "").split(".")]).strip("."),
                        [a.name for a in node.names]))
    return out


OWN = ["backends/*.py", "classifier.py"]  # backends/ holds base, device, fingerprint and trt_build


def test_no_private_name_crosses_a_module_and_no_trt_cycle() -> None:
    """The old cycle backends/tensorrt -> trt_build -> fingerprint -> backends/tensorrt (which
    imported its private ``_cc``/``_trt_version``) is gone: the backend side imports nothing private."""
    edges: dict[str, set[str]] = {}
    for path in (p for pattern in OWN for p in RUNTIME.glob(pattern)):
        mod = ".".join(["cmkd_edge", "runtime", *path.relative_to(RUNTIME).with_suffix("").parts])
        for target, names in _imports(path):
            private = [n for n in names if n.startswith("_") and n != "__future__"]
            assert not private or target == "__future__", f"{mod} imports private {private} from {target}"
            edges.setdefault(mod, set()).add(target)
    trt_side = [f"cmkd_edge.runtime.backends.{m}" for m in ("fingerprint", "trt_build", "device")]
    for mod in trt_side:
        assert "cmkd_edge.runtime.backends.tensorrt" not in edges.get(mod, set()), mod
