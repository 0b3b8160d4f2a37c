"""`cmkd-edge select`: measured through the runtime, cached per artifact and device, a front, a choice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from cmkd_edge.runtime.selection.budget import make_budget, parse_amount
from cmkd_edge.runtime.selection.choose import _pareto, read_selection, run_selection
from cmkd_edge.runtime.selection.records import Candidate

from cmkd_edge.cli import main
from cmkd_edge.errors import ConfigError

FAST = ["--iterations", "30", "--warmup", "3", "--threads", "1"]


def run(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def tree_hashes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def copy_bundles(two_bundles: tuple[Path, Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    small, large, npz = two_bundles
    d = tmp_path / "bundles"
    return (Path(shutil.copytree(small, d / "small")), Path(shutil.copytree(large, d / "large")), npz)


def test_select_measures_through_the_runtime_and_picks_the_fastest_that_fits(two_bundles, tmp_path: Path) -> None:
    from cmkd_edge.runtime.evaluate import evaluate_bundle

    small, large, npz = copy_bundles(two_bundles, tmp_path)
    before = {b: tree_hashes(b) for b in (small, large)}
    res = run("select", small, large, "--data", npz, "--max-drop", "100", "--json", *FAST)
    assert res.exit_code == 0, res.output + res.stderr
    doc = json.loads(res.stdout)
    assert doc["written"] == str(small.parent / "selection.json")
    sel = read_selection(doc["written"])
    assert sel.to_dict() == {k: v for k, v in doc.items() if k != "written"}
    # every runnable artifact x backend of both bundles, at one thread: small has 3 artifacts on 2
    # CPU backends (the IR on OpenVINO only), large one ONNX on 2
    assert len(sel.candidates) == 5 + 2 and {c.threads for c in sel.candidates} == {1}
    # accuracy is evaluate's, to the digit, with split, n and a 95 % interval
    with np.load(npz) as z:
        ev = evaluate_bundle(small, z["x"], z["labels"], split="val", latency_iterations=0)
    for row in ev["rows"]:
        c = sel.candidate(f"small:{row['artifact']}@{row['backend']}/t1")
        assert c.accuracy == pytest.approx(100 * row["accuracy"]) and c.n == 60 and c.split == "val"
        assert c.accuracy_interval[0] < c.accuracy < c.accuracy_interval[1]
        assert c.drop == row["drop"] and c.drop_interval == (row["drop_lo"], row["drop_hi"])
    # the choice: the fastest p99 among those that fit, and it is marked on the table's data
    fit = [c for c in sel.candidates if c.fits]
    assert sel.chosen == min(fit, key=lambda c: c.latency_ms["p99"]).id
    assert all(c.latency_ms["p50"] <= c.latency_ms["p99"] and c.size_mb > 0 for c in sel.candidates)
    assert set(sel.front) and all(sel.candidate(i).pareto for i in sel.front)
    assert {b: tree_hashes(b) for b in (small, large)} == before  # nothing in a bundle changed


def test_second_call_with_another_budget_reads_the_cache_and_no_data(two_bundles, tmp_path: Path) -> None:
    small, large, npz = copy_bundles(two_bundles, tmp_path)
    calls: list[str] = []

    def loader(b):  # noqa: ANN001, ANN202
        calls.append(str(b.root))
        with np.load(npz) as z:
            return z["x"], z["labels"], {"data": str(npz)}

    kw = dict(data=str(npz), split="val", threads=[1], warmup=2, iterations=20, cache_dir=tmp_path / "c")
    first = run_selection([str(small), str(large)], loader, make_budget("p99", max_size_mb="10"), **kw)
    assert len(calls) == 2 and not any(c.cached for c in first.candidates)
    second = run_selection([str(small), str(large)], loader, make_budget("p50", max_drop="0.5"), **kw)
    assert len(calls) == 2, "the second budget re-read the data"
    assert all(c.cached for c in second.candidates)
    assert [c.latency_ms for c in second.candidates] == [c.latency_ms for c in first.candidates]
    assert second.budget.max_drop == 0.5 and all(c.drop is not None and (c.drop <= 0.5) == c.fits
                                                   for c in second.candidates)
    # a changed artifact is measured again (its sha256 is the key)
    third = run_selection([str(small), str(large)], loader, make_budget("p99"),
                          **{**kw, "cache_dir": tmp_path / "other"})
    assert len(calls) == 4 and not any(c.cached for c in third.candidates)


def test_an_impossible_budget_names_the_binding_constraint_and_exits_1(two_bundles, tmp_path: Path) -> None:
    small, large, npz = copy_bundles(two_bundles, tmp_path)
    res = run("select", small, large, "--data", npz, "--max-latency-ms", "1us", "--max-size-mb", "100",
              *FAST)
    assert res.exit_code == 1, res.output
    err = res.stderr.strip().splitlines()
    assert err[-1].startswith("error: no candidate meets the budget (p99 latency <= 0.001 ms")
    assert "p99_latency fails for 7 of 7 candidates" in err[-1] and "over the limit 0.001 ms" in err[-1]
    assert "Traceback" not in res.output
    sel = read_selection(small.parent / "selection.json")
    assert sel.chosen is None and sel.binding == "p99_latency" and len(sel.nearest) == 3
    nearest = sel.candidate(sel.nearest[0])
    assert nearest.fails[0].over == pytest.approx(nearest.latency_ms["p99"] - 0.001)
    assert "misses p99_latency" in res.stdout  # the table still shows every candidate


def test_bad_input_is_one_line(two_bundles, tmp_path: Path) -> None:
    from bundle_factory import make_bundle

    small, large, npz = copy_bundles(two_bundles, tmp_path)
    other = make_bundle(tmp_path / "bundles" / "three-classes", classes=3, openvino=False)
    cases = {
        "another task": (["select", small, other, "--data", npz], "answers another question"),
        "unit": (["select", small, "--data", npz, "--max-latency-ms", "5 parsecs"], "unknown unit 'parsecs'"),
        "fraction": (["select", small, "--data", npz, "--min-accuracy", "0.9"], "give percent"),
        "threads": (["select", small, "--data", npz, "--threads", "x"], "--threads 'x'"),
    }
    x = np.load(npz)["x"]
    unlabelled = tmp_path / "unlabelled.npz"
    np.savez(unlabelled, x=x, labels=np.full(len(x), -1))
    cases["no labels"] = (["select", small, "--data", unlabelled], "without a label")
    for name, (args, fragment) in cases.items():
        res = run(*args)
        lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("select: ")]  # progress
        assert "Traceback" not in res.output and res.exit_code == 2, (name, res.output)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, res.output)
        assert fragment in lines[0], (name, lines[0])
    assert not (small.parent / "selection.json").exists()


def test_an_artifact_this_device_cannot_run_is_a_stated_skip(two_bundles, tmp_path: Path) -> None:
    from dataclasses import replace

    from cmkd_edge.runtime.contract.manifest import Artifact, read_manifest, write_manifest

    small, _, npz = copy_bundles(two_bundles, tmp_path)
    (small / "model.plan").write_bytes(b"not a real engine")
    m = read_manifest(small)
    plan = Artifact(id="tensorrt-fp16", path="model.plan", format="tensorrt-plan", precision="fp16",
                    backend="tensorrt", files=("model.plan",),
                    fingerprint={"tensorrt": "10.3", "gpu": "Orin", "compute_capability": "8.7"})
    write_manifest(small, replace(m, artifacts=(*m.artifacts, plan)))
    res = run("select", small, "--data", npz, *FAST)
    assert res.exit_code == 0, res.output + res.stderr
    assert "note: not measured here: small tensorrt-fp16 on tensorrt:" in res.stdout
    sel = read_selection(small.parent / "selection.json")
    assert [s.artifact for s in sel.skipped] == ["tensorrt-fp16"] and "GPU" in sel.skipped[0].why
    assert not any(c.artifact == "tensorrt-fp16" for c in sel.candidates)
    assert sel.why.endswith("the budget sets no accuracy limit: add --max-drop or --min-accuracy to bound "
                            "what it may lose")


def test_budget_units() -> None:
    assert parse_amount("--max-latency-ms", "0.5s") == 500.0
    assert parse_amount("--max-latency-ms", "800us") == pytest.approx(0.8)
    assert parse_amount("--max-size-mb", "1GiB") == 1024.0
    assert parse_amount("--max-size-mb", "5MB") == pytest.approx(5e6 / 2**20)
    assert parse_amount("--min-accuracy", "90%") == 90.0 and parse_amount("--max-drop", "1.5pt") == 1.5
    for option, text in [("--max-latency-ms", "5 min"), ("--max-size-mb", "-3"), ("--max-drop", "x"),
                         ("--min-accuracy", "101")]:
        with pytest.raises(ConfigError):
            parse_amount(option, text)
    assert make_budget("p90", max_latency_ms="2").describe() == "p90 latency <= 2 ms"


def _cand(cid: str, acc: float, p99: float, size: float) -> Candidate:
    return Candidate(id=cid, bundle="b", artifact=cid, backend="onnxruntime", precision="fp32", threads=1,
                     batch=1, metric="accuracy", accuracy=acc, accuracy_interval=(acc - 1, acc + 1),
                     split="val", n=100, latency_ms={"p99": p99}, size_mb=size, files={})


def test_pareto_front_keeps_exactly_the_undominated() -> None:
    cands = [_cand("best-acc", 95, 10, 4), _cand("fast", 90, 2, 4), _cand("small", 85, 5, 1),
             _cand("dominated", 89, 3, 4), _cand("twin-slower", 95, 11, 4)]
    assert _pareto(cands, "p99") == {"best-acc", "fast", "small"}


def test_select_runs_on_the_base_install_with_arrays(two_bundles, tmp_path: Path) -> None:
    """No torch, onnx, openvino or matplotlib: select scores .npz arrays, OpenVINO rows are stated skips."""
    import subprocess
    import sys
    import textwrap

    small, large, npz = copy_bundles(two_bundles, tmp_path)
    blocked = ("torch", "onnx", "onnxscript", "onnxslim", "sklearn", "matplotlib", "openvino", "nncf",
               "tensorrt", "cuda")
    code = textwrap.dedent(f"""
        import json, sys
        for name in {blocked!r}:
            sys.modules[name] = None  # = not installed
        from click.testing import CliRunner
        from cmkd_edge.cli import main
        res = CliRunner().invoke(main, ["select", {str(small)!r}, {str(large)!r}, "--data", {str(npz)!r},
                                        "--max-drop", "50", "--json", *{FAST!r}])
        print(json.dumps({{"code": res.exit_code, "stdout": res.stdout, "stderr": res.stderr,
                          "loaded": [m for m in {blocked!r} if sys.modules.get(m) is not None]}}))
    """)
    env = {"CMKD_EDGE_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["code"] == 0 and out["loaded"] == [], out
    doc = json.loads(out["stdout"])
    assert {c["backend"] for c in doc["candidates"]} == {"onnxruntime"}
    assert {s["backend"] for s in doc["skipped"]} == {"openvino"} and doc["chosen"]
