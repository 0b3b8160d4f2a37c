"""A clean clone stays clean after set-up and the README tour; the docs the help points to exist."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import run

ROOT = Path(__file__).resolve().parents[2]


def git(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)


def test_build_metadata_is_not_tracked() -> None:
    tracked = git("ls-files").stdout.splitlines()
    assert not [f for f in tracked if ".egg-info" in f], "pip install -e rewrites it: keep it out of git"


@pytest.mark.parametrize("path", ["cmkd_edge.egg-info/PKG-INFO", "runs/teacher/best.pt",
                                  "bundles/rgb-student/manifest.json", "rgb-student.tar.gz",
                                  "latency.json", "latency.png", "latency.csv", "cmkd-demo/demo.json",
                                  "bundles/selection.json", "rgb-student.html", "student.report.html"])
def test_setup_and_tour_outputs_are_ignored(path: str) -> None:
    assert git("check-ignore", "-q", "--no-index", path).returncode == 0, f"{path} is not ignored"


def test_sources_are_not_ignored() -> None:
    for path in ("runtime/profiler.py", "docs/methods.md", "tests/runtime/bundle_factory.py"):
        assert git("check-ignore", "-q", "--no-index", path).returncode == 1, path


def test_mfh_help_points_to_a_page_that_exists_and_says_what_mg_is() -> None:
    res = run("mfh", "synthetic", "--help")
    assert res.exit_code == 0 and "docs/methods.md" in res.output
    assert "modality-general" in res.output and '"MG"' in res.output
    page = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    assert "## 2. Modality Focusing Hypothesis" in page  # the section the help names
    assert "**MG teacher**" in page and "*modality-general* teacher" in page
