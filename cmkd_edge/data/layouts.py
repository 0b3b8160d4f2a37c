"""Recognise a dataset's layout from its path and load it once per process.

Detection order: ``None``/``synthetic[:...]`` -> synthetic; a ``.npz`` file or a folder holding one
-> BigEarthNet pack; a folder with ``labels.csv`` and two raster folders sharing file names ->
paired; BigEarthNet patch folders or ``.tar.*`` archives -> BigEarthNet GeoTIFF; a labels.csv of
PNG/JPEG (or one-band 8-bit TIFF) chips, or class folders of them -> chips; class folders of
GeoTIFFs -> EuroSAT-MS. Loaded catalogs are cached (keyed by path and modification time), so the
train, val and test datasets of one run read each file once.
"""

from __future__ import annotations

import os
from pathlib import Path

from cmkd_edge.data import bigearthnet, chips, eurosat, paired, synthetic
from cmkd_edge.data.archive import is_archive
from cmkd_edge.data.catalog import Catalog
from cmkd_edge.errors import DataError

LAYOUTS = ("synthetic", "bigearthnet-npz", "paired", "bigearthnet-geotiff", "chips", "eurosat-ms")
#: The view a layout's data is read in when ``--view`` is omitted (its own modality).
DEFAULT_VIEWS = {"chips": "chip"}
FALLBACK_VIEW = "ms"
_CACHE: dict[tuple, Catalog] = {}
_MAX_CACHED = 4


def is_synthetic_path(path: str | os.PathLike[str] | None) -> bool:
    """True for ``None`` or the literal ``synthetic`` (optionally ``synthetic:<options>``)."""
    return path is None or str(path) == "synthetic" or str(path).startswith("synthetic:")


def detect_layout(path: str | os.PathLike[str] | None) -> str:
    """Name of the layout at ``path`` (one of :data:`LAYOUTS`).

    Raises:
        DataError: the path does not exist or matches no layout.
    """
    if is_synthetic_path(path):
        return "synthetic"
    root = Path(path)  # type: ignore[arg-type]
    if not root.exists():
        raise DataError(f"data path not found: {root}")
    if root.is_file():
        if root.suffix == ".npz":
            return "bigearthnet-npz"
        if is_archive(root):
            return "bigearthnet-geotiff"
        raise DataError(f"{root} is not a dataset (expected a folder, a .npz pack or a .tar.* "
                        "archive)")
    if paired.looks_like_paired(root):
        return "paired"
    if bigearthnet.find_npz(root) is not None:
        return "bigearthnet-npz"
    if bigearthnet.looks_like_geotiff_folders(root):
        return "bigearthnet-geotiff"
    if chips.looks_like_chips(root):
        return "chips"
    if eurosat.looks_like_eurosat(root):
        return "eurosat-ms"
    raise DataError(
        f"no known dataset layout in {root}",
        "expected <Class>/<name>.tif (EuroSAT-MS), a BigEarthNet .npz or patch folders, "
        "labels.csv with two folders of co-registered files, or PNG/JPEG chips",
    )


def _signature(path: Path) -> tuple:
    marks = [path, path / "labels.csv", path / "classes.txt"]
    stats = []
    for m in marks:
        try:
            st = m.stat()
            stats.append((st.st_mtime_ns, st.st_size))
        except OSError:
            stats.append(None)
    return tuple(stats)


def load_catalog(path: str | os.PathLike[str] | None) -> Catalog:
    """Load (or fetch from the in-process cache) the catalog at ``path``."""
    layout = detect_layout(path)
    if layout == "synthetic":
        return synthetic.generate(synthetic.parse_synthetic(str(path or "synthetic")))
    root = Path(path).resolve()  # type: ignore[arg-type]
    key = (layout, str(root), _signature(root))
    if key in _CACHE:
        return _CACHE[key]
    if layout == "bigearthnet-npz":
        catalog = bigearthnet.load_npz(bigearthnet.find_npz(root))  # type: ignore[arg-type]
    elif layout == "paired":
        catalog = paired.load_paired(root)
    elif layout == "bigearthnet-geotiff":
        catalog = bigearthnet.load_geotiff_folders(root)
    elif layout == "chips":
        catalog = chips.load_chips(root)
    else:
        catalog = eurosat.load_eurosat(root)
    while len(_CACHE) >= _MAX_CACHED:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = catalog
    return catalog


def default_view(path: str | os.PathLike[str] | None) -> str:
    """The view of the data's own modality (``chip`` for radar chips; ``ms`` otherwise, the
    historical default), used when ``--view`` is omitted."""
    return DEFAULT_VIEWS.get(detect_layout(path), FALLBACK_VIEW)


def clear_cache() -> None:
    """Forget every loaded catalog (e.g. after files changed in place)."""
    _CACHE.clear()
    synthetic.generate.cache_clear()


def same_data(a: str | None, b: str | None) -> bool:
    """Whether two dataset paths name the same data (None / "synthetic" = the synthetic default)."""
    def norm(p: str | None) -> str:
        return "synthetic" if p in (None, "", "synthetic") else str(Path(p).expanduser().resolve())

    return norm(a) == norm(b)
