"""EuroSAT-MS layout: ``<Class>/<name>.tif`` (13 bands, EuroSAT order), optional ``labels.csv``.

``labels.csv`` (columns ``file,label[,class_name][,split]``, paths relative to the CSV) fixes labels
and the split when present (an empty ``label`` = an unlabelled patch); otherwise every ``.tif`` under
a class folder is a sample of that class, every ``.tif`` under ``unlabelled/`` a sample without a
label (training split only), and the dataset draws a seeded split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmkd_edge.data.bands import EUROSAT_BANDS, OPTICAL_UNITS
from cmkd_edge.data.catalog import Catalog, stack_patches
from cmkd_edge.data.labels import UNLABELLED, UNLABELLED_DIRS, read_labels_csv, resolve_labels
from cmkd_edge.data.readers import read_geotiff
from cmkd_edge.data.splits import normalise_split
from cmkd_edge.errors import DataError

_TIF = (".tif", ".tiff")


def _tifs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _TIF)


def class_root(root: Path) -> Path | None:
    """The folder holding the class folders (``root`` or ``root/tif``), or None if neither does."""
    for cand in (root, root / "tif"):
        if cand.is_dir() and any(d.is_dir() and _tifs(d) for d in cand.iterdir()):
            return cand
    return None


def looks_like_eurosat(root: Path) -> bool:
    """True when ``root`` has class folders of GeoTIFFs."""
    return root.is_dir() and class_root(root) is not None


def load_eurosat(root: Path) -> Catalog:
    """Read every patch of an EuroSAT-MS folder into a :class:`Catalog`.

    Raises:
        DataError: no class folders, a missing or unreadable file, a file without 13 bands, an
            unknown class or duplicate row in labels.csv, patches of different sizes.
    """
    croot = class_root(root)
    if croot is None:
        raise DataError(f"{root} has no <Class>/<name>.tif folders (EuroSAT-MS layout)")
    dirs = sorted(d.name for d in croot.iterdir() if d.is_dir() and _tifs(d))
    folders = [d for d in dirs if d.lower() not in UNLABELLED_DIRS]
    if not folders:
        raise DataError(f"{croot} has patches only in {', '.join(dirs)}/ and no <Class>/ folder",
                        "put the labelled patches in one folder per class")
    csv_path = root / "labels.csv"
    splits = None
    if csv_path.is_file():
        rows = read_labels_csv(csv_path, ["file", "label"])
        names = None
        if "class_name" in rows[0]:
            known = set(folders)
            for line, row in enumerate(rows, start=2):
                if row["class_name"] not in known and row["label"] != "":
                    raise DataError(f"unknown class {row['class_name']!r} in {csv_path} "
                                    f"(line {line}; class folders: {', '.join(folders)})")
        else:
            names = folders
        labels, class_names = resolve_labels(rows, csv_path, names)
        files = [root / r["file"] for r in rows]
        ids = [r["file"] for r in rows]
        if "split" in rows[0]:
            splits = np.asarray([normalise_split(r["split"], str(csv_path)) for r in rows])
    else:
        class_names = folders
        files, ids, lab = [], [], []
        for k, cls in enumerate(folders):
            for f in _tifs(croot / cls):
                files.append(f)
                ids.append(f.relative_to(root).as_posix())
                lab.append(k)
        for d in (d for d in dirs if d.lower() in UNLABELLED_DIRS):
            for f in _tifs(croot / d):
                files.append(f)
                ids.append(f.relative_to(root).as_posix())
                lab.append(UNLABELLED)
        labels = np.asarray(lab, dtype=np.int64)
    arrays, band_names = [], None
    for f in files:
        if not f.exists() and csv_path.is_file():
            raise DataError(f"file not found: {f} (listed in {csv_path})")
        arr, names = read_geotiff(f, EUROSAT_BANDS, expected_count=len(EUROSAT_BANDS))
        if band_names is None:
            band_names = names
        elif names != band_names:
            raise DataError(f"{f} has bands {','.join(names)}, expected {','.join(band_names)}")
        arrays.append(arr)
    s2 = stack_patches(arrays, [str(f) for f in files], "patches")
    return Catalog("eurosat-ms", str(root), ids, labels, class_names, "multiclass", {"s2": s2},
                   {"s2": band_names or EUROSAT_BANDS}, {"s2": OPTICAL_UNITS}, splits)
