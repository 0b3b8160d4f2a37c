"""Image-chip layout: folders of PNG/JPEG/TIFF radar chips without geo-referencing (e.g. MSTAR).

``labels.csv`` (columns ``file,label[,class_name][,split]``, paths relative to the CSV; extra columns
such as ``depression_deg`` or ``md5`` are ignored) fixes labels and the split, exactly as for
EuroSAT-MS; a row with an empty ``label`` is an unlabelled chip. Without it, every chip under
``<Class>/`` (one level, or under ``jpeg/``/``png/``) is a sample of that class, every chip under
``unlabelled/`` beside them a sample without a label (training split only: it learns through its
teacher-modality partner), and the dataset draws a seeded split. Chips are read by the runtime's reader
(:func:`cmkd_edge.runtime.formats.chips.read_chip`, Pillow), so training and the device see the same array:
one band ``MAG`` of 8-bit magnitude (source ``chip``, units ``magnitude_u8``).

Why a layout of its own rather than EuroSAT's: a chip has no band descriptions, no CRS and one band
whose units (8-bit amplitude) are neither reflectance nor dB; its natural view is ``chip``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmkd_edge.data.catalog import Catalog, stack_patches
from cmkd_edge.data.labels import UNLABELLED, UNLABELLED_DIRS, read_labels_csv, resolve_labels
from cmkd_edge.data.splits import normalise_split
from cmkd_edge.errors import DataError
from cmkd_edge.runtime.formats.chips import CHIP_BANDS, CHIP_UNITS, is_chip_path, read_chip

#: Image suffixes that make a folder a chip layout on their own (TIFF alone could be EuroSAT).
_IMAGE_ONLY = (".png", ".jpg", ".jpeg")
_SUBDIRS = ("", "jpeg", "jpg", "png", "chips")


def _chips(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_chip_path(p))


def _csv_files(root: Path) -> list[str] | None:
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        return None
    try:
        with open(csv_path, encoding="utf-8-sig") as fh:
            header = fh.readline()
            first = fh.readline()
    except (OSError, UnicodeDecodeError):
        return None
    cols = [c.strip() for c in header.split(",")]
    if "file" not in cols or not first:
        return None
    return [first.split(",")[cols.index("file")].strip()]


def _is_chip_file(path: Path) -> bool:
    """PNG/JPEG always; a TIFF only when it is one 8-bit band (a multi-band or float GeoTIFF is
    EuroSAT's or a scene, read by rasterio)."""
    suffix = path.suffix.lower()
    if suffix in _IMAGE_ONLY:
        return True
    if suffix not in (".tif", ".tiff") or not path.is_file():
        return False
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    # why rasterio for the probe: Pillow's TIFF decoder prints to stderr on a 13-band file
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.count == 1 and src.dtypes[0] == "uint8"
    except RasterioIOError:
        return False


def looks_like_chips(root: Path) -> bool:
    """True for a folder whose labels.csv lists chip files, or with class folders of chips."""
    if not root.is_dir():
        return False
    listed = _csv_files(root)
    if listed:
        return _is_chip_file(root / listed[0]) or Path(listed[0]).suffix.lower() in _IMAGE_ONLY
    return class_root(root) is not None


def class_root(root: Path) -> Path | None:
    """The folder holding ``<Class>/`` folders of chips, or None."""
    for sub in _SUBDIRS:
        cand = root / sub if sub else root
        if not cand.is_dir():
            continue
        for d in sorted(cand.iterdir()):
            files = _chips(d) if d.is_dir() else []
            if files and _is_chip_file(files[0]):
                return cand
    return None


def load_chips(root: Path) -> Catalog:
    """Read every chip of a chip folder into a :class:`Catalog` (source ``chip``, one band).

    Raises:
        DataError: no chips, a missing or unreadable chip, an unknown class or duplicate row in
            labels.csv, chips of different sizes.
    """
    csv_path = root / "labels.csv"
    splits = None
    if csv_path.is_file():
        rows = read_labels_csv(csv_path, ["file", "label"])
        labels, class_names = resolve_labels(rows, csv_path, None)
        ids = [r["file"] for r in rows]
        files = [root / f for f in ids]
        if "split" in rows[0]:
            splits = np.asarray([normalise_split(r["split"], str(csv_path)) for r in rows])
    else:
        croot = class_root(root)
        if croot is None:
            raise DataError(f"{root} has no labels.csv and no <Class>/ folders of chips")
        dirs = sorted(d.name for d in croot.iterdir() if d.is_dir() and _chips(d))
        class_names = [d for d in dirs if d.lower() not in UNLABELLED_DIRS]
        if not class_names:
            raise DataError(f"{croot} has chips only in {', '.join(dirs)}/ and no <Class>/ folder",
                            "put the labelled chips in one folder per class")
        files, lab = [], []
        for k, cls in enumerate(class_names):
            for f in _chips(croot / cls):
                files.append(f)
                lab.append(k)
        for d in (d for d in dirs if d.lower() in UNLABELLED_DIRS):
            for f in _chips(croot / d):
                files.append(f)
                lab.append(UNLABELLED)
        ids = [f.relative_to(root).as_posix() for f in files]
        labels = np.asarray(lab, dtype=np.int64)
    arrays = []
    for f in files:
        if not f.exists():
            raise DataError(f"file not found: {f}" + (f" (listed in {csv_path})" if csv_path.is_file() else ""))
        arrays.append(read_chip(f))
    chips = stack_patches(arrays, [str(f) for f in files], "chips")
    return Catalog("chips", str(root), ids, labels, list(class_names), "multiclass", {"chip": chips},
                   {"chip": CHIP_BANDS}, {"chip": CHIP_UNITS}, splits)
