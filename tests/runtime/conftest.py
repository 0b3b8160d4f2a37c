"""Fixtures: real small bundles (ONNX + OpenVINO IR, optional INT8) and synthetic GeoTIFF scenes."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bundle_factory import make_bundle, write_scene  # noqa: E402


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fp32 ONNX + fp32 OpenVINO IR, 13 bands, 16x16, 4 classes. Do not modify: copy first."""
    return make_bundle(tmp_path_factory.mktemp("bundles") / "fp32")


@pytest.fixture(scope="session")
def int8_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundles") / "int8", openvino=False, int8=True)


@pytest.fixture
def bundle_copy(bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy of ``bundle_dir`` a test may tamper with."""
    return Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))


@pytest.fixture
def scene_factory(tmp_path: Path):
    def make(height: int, width: int, **kw) -> Path:
        return write_scene(tmp_path / f"scene_{height}x{width}.tif", height, width, **kw)
    return make
