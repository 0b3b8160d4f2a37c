"""The commands of cmkd_edge.cli.methods: help, mfh synthetic, diagnose on tiny models."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cmkd_edge.cli import main


@pytest.mark.parametrize("cmd", [["match"], ["mfh"], ["mfh", "synthetic"], ["diagnose"]])
def test_help(cmd) -> None:
    r = CliRunner().invoke(main, [*cmd, "--help"])
    assert r.exit_code == 0 and "Example" in r.output


def test_mfh_synthetic_writes_json_and_plot(tmp_path) -> None:
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    r = CliRunner().invoke(
        main,
        [
            "mfh",
            "synthetic",
            "--experiment",
            "table2",
            "--seeds",
            "1",
            "--steps",
            "20",
            "--json",
            str(out),
            "--plot",
            str(png),
            "--threads",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert len(res["points"]) == 5 and res["kd"]["reduction"] == "mean"
    assert png.stat().st_size > 1000
    assert "MG-KD" in r.output


def test_mfh_synthetic_rejects_bad_experiment() -> None:
    r = CliRunner().invoke(main, ["mfh", "synthetic", "--experiment", "beta"])
    assert r.exit_code == 2


def test_diagnose_models_reports_metrics_and_ranking(models, paired) -> None:
    from cmkd_edge.diagnostics import diagnose_models

    teacher, student = models
    res = diagnose_models(teacher, student.eval(), paired.ms[:12], paired.rgb[:12], repeats=2)
    d = teacher.feature_dims["embed"]
    assert sorted(res["mfh_saliency"]["ranking"]) == list(range(d))
    for side in ("teacher", "student"):
        assert all(torch.isfinite(torch.tensor(v)) for v in res[side].values())
