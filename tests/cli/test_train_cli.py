"""train-teacher / distill / evaluate / demo from the command line, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import SHARED, TINY, run


def test_distill_and_evaluate(cli_teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "student"
    res = run("distill", "--teacher", str(cli_teacher / "best.pt"), "--data", TINY, "--student-view", "sar",
              "--arch", "mobilenetv2-tiny", "--method", "kd", "--method-opt", "reduction=mean",
              "--temperature", "2", "--epochs", "1", "--batch-size", "8", "--quiet", "--json", "--out", str(out))
    assert res.exit_code == 0, res.output + res.stderr
    summary = json.loads(res.stdout)
    assert summary["role"] == "student" and summary["synthetic"] is True
    res = run("evaluate", str(out / "best.pt"), "--data", TINY, "--split", "test", "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert {"macro_f1", "ece", "per_class_accuracy", "confusion_matrix"} <= set(report)
    res = run("evaluate", str(out))  # run dir, default data = the training data, rich table
    assert res.exit_code == 0, res.stderr
    assert "accuracy" in res.stdout and "SYNTHETIC" in res.stdout


def _error(res, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    line = res.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in res.output, line
    for n in needles:
        assert n in line, line


@pytest.mark.parametrize("args, needles", [
    (["--data", "/no/such/place"], ["data path not found", "/no/such/place"]),
    (["--view", "radar"], ["unknown view 'radar'", "rgb"]),
    (["--arch", "vgg"], ["unknown arch 'vgg'", "resnet18"]),
    (["--view", "bands:B02,B99"], ["B99"]),
    (["--epochs", "0"], ["epochs"]),
])
def test_train_teacher_errors(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    _error(run("train-teacher", "--data", TINY, "--out", str(tmp_path / "x"), *args), *needles)


def test_distill_errors(cli_teacher: Path, tmp_path: Path) -> None:
    t = str(cli_teacher)
    _error(run("distill", "--teacher", t, "--data", TINY, "--method", "magic", "--out", str(tmp_path / "a")),
           "unknown method 'magic'", "kd")
    _error(run("distill", "--teacher", t, "--data", TINY, "--method-opt", "nope=1", "--out", str(tmp_path / "b")),
           "unknown option 'nope'")
    _error(run("distill", "--teacher", str(tmp_path / "missing.pt"), "--data", TINY, "--out", str(tmp_path / "c")),
           "checkpoint not found")
    _error(run("distill", "--teacher", t, "--data", "synthetic:per_class=6,size=16,num_classes=4",
               "--student-view", "sar", "--out", str(tmp_path / "d")), "teacher classes")
    _error(run("evaluate", t, "--view", "sar"), "not compatible")
    _error(run("distill", "--teacher", t, "--method", "none", "--kd-weight", "1", "--data", TINY,
               "--out", str(tmp_path / "e")), "kd_weight")


def test_real_data_errors(tmp_path: Path) -> None:
    eurosat, ben = SHARED / "eurosat_ms_200", SHARED / "bigearthnet_mm_tiny"
    if not (eurosat / "labels.csv").is_file() or not ben.is_dir():
        pytest.skip(f"shared sample data not found at {SHARED}")
    # EuroSAT has no SAR source; BigEarthNet S2 has no B10
    _error(run("train-teacher", "--data", str(eurosat), "--view", "sar", "--out", str(tmp_path / "a")), "s1")
    _error(run("train-teacher", "--data", str(ben), "--view", "bands:B02,B10", "--out", str(tmp_path / "b")),
           "B10")
    # a label that is not a class
    bad = tmp_path / "bad"
    src = sorted((eurosat / "tif" / "Forest").glob("*.tif"))[:2]
    (bad / "Forest").mkdir(parents=True)
    lines = ["file,label,class_name,split"]
    for i, f in enumerate(src):
        (bad / "Forest" / f.name).write_bytes(f.read_bytes())
        lines.append(f"Forest/{f.name},{7 if i else 1},{'Nowhere' if i else 'Forest'},train")
    (bad / "labels.csv").write_text("\n".join(lines) + "\n")
    res = run("train-teacher", "--data", str(bad), "--out", str(tmp_path / "c"))
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "labels.csv" in res.stderr, res.output


def test_demo_tiny(tmp_path: Path) -> None:
    res = run("demo", "--workdir", str(tmp_path / "demo"), "--data", TINY, "--epochs", "1", "--quiet")
    assert res.exit_code == 0, res.output + res.stderr
    for name in ("teacher", "student-nokd", "student-kd", "evaluate"):
        assert name in res.stdout
    assert "SYNTHETIC" in res.stdout
    marker = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert marker["status"] == "finished" and len(marker["rows"]) == 3
    # the few-label regime: both students saw the same few labels; the one bundled is named, with why
    choice = marker["choice"]
    assert choice["chosen"] in ("student-kd", "student-nokd") and choice["labels"]["source"] == "fraction"
    assert any(n.startswith(f"{choice['chosen']} is bundled") for n in marker["notes"])
    assert [r["labels"] for r in marker["rows"]][1] == [r["labels"] for r in marker["rows"]][2] != "all"
    # rerun into the same workdir replaces the previous demo; a foreign non-empty dir is refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    _error(run("demo", "--workdir", str(other), "--data", TINY, "--epochs", "1"), "not empty")


def test_multilabel_bigearthnet(tmp_path: Path) -> None:
    ben = SHARED / "bigearthnet_mm_tiny"
    if not ben.is_dir():
        pytest.skip(f"shared BigEarthNet sample not found at {ben}")
    res = run("train-teacher", "--data", str(ben), "--view", "sar", "--arch", "resnet-narrow", "--epochs", "1",
              "--batch-size", "8", "--quiet", "--json", "--out", str(tmp_path / "ben"))
    assert res.exit_code == 0, res.output + res.stderr
    s = json.loads(res.stdout)
    assert s["task"] == "multilabel" and s["select_metric"] == "map"
    assert {"map", "micro_f1", "macro_f1", "per_class_ap"} <= set(s["test"])
