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


def test_mfh_plot_is_written_atomically(tmp_path, monkeypatch) -> None:
    """A save that fails half-way must leave the user's previous file as it was, and no temp file."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from cmkd_edge.mfh.report import plot_experiment

    stat = {"mean": 80.0, "std": 1.0}
    res = {
        "experiment": "gamma",
        "seeds": [0],
        "teacher_mode": "gt",
        "points": [{"gamma": g, "teacher": stat, "no_kd": stat, "kd": stat} for g in (0.0, 0.5, 1.0)],
    }
    png = tmp_path / "fig.png"
    png.write_bytes(b"previous figure")

    def broken(self, fh, **kwargs):
        fh.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(Figure, "savefig", broken)
        with pytest.raises(OSError):
            plot_experiment(res, str(png))
    assert png.read_bytes() == b"previous figure" and [p.name for p in tmp_path.iterdir()] == ["fig.png"]
    plot_experiment(res, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mfh_synthetic_rejects_bad_experiment() -> None:
    r = CliRunner().invoke(main, ["mfh", "synthetic", "--experiment", "beta"])
    assert r.exit_code == 2


def test_diagnose_models_reports_metrics_and_ranking(models, paired) -> None:
    from cmkd_edge.distill.diagnostics import diagnose_models

    teacher, student = models
    res = diagnose_models(teacher, student.eval(), paired.ms[:12], paired.rgb[:12], repeats=2)
    d = teacher.feature_dims["embed"]
    assert sorted(res["mfh_saliency"]["ranking"]) == list(range(d))
    for side in ("teacher", "student"):
        assert all(torch.isfinite(torch.tensor(v)) for v in res[side].values())
