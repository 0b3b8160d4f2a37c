"""BigEarthNet Sentinel-1/Sentinel-2 patches (multi-label, 19-class nomenclature).

Two forms are read:

* the ``.npz`` pack (``s1`` (N,2,H,W) dB, ``s2`` (N,12,H,W), ``labels19``, ``class_names``,
  ``s2_bands``, ``s1_bands``; optional ``index.csv`` beside it naming the patches);
* the original per-band GeoTIFF folders (``<patch>/<patch>_B02.tif`` ... and
  ``<patch>_labels_metadata.json``; S1 folders ``<patch>_VV.tif``, ``<patch>_VH.tif``), also inside
  ``.tar.*`` archives, which are extracted safely into the cache (:mod:`cmkd_edge.data.archive`).

The metadata holds CORINE level-3 labels (BigEarthNet's 43 classes); they are mapped to the
19-class nomenclature of Sumbul et al. (2021), the mapping of BigEarthNet's ``label_indices.json``.
Eleven classes have no 19-class counterpart; patches left without any label are dropped (noted in
``describe()``), as the nomenclature recommends. 20 m and 60 m bands are nearest-neighbour upsampled
to the 10 m grid by integer repetition, as in the ``.npz`` pack.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from cmkd_edge.data.archive import extract_archive, is_archive
from cmkd_edge.data.bands import BEN_S2_BANDS, OPTICAL_UNITS, S1_BANDS
from cmkd_edge.data.catalog import Catalog, stack_patches
from cmkd_edge.data.labels import multi_hot
from cmkd_edge.data.readers import read_geotiff
from cmkd_edge.errors import DataError

#: The 19-class nomenclature, in BigEarthNet's order.
BEN19_CLASSES: tuple[str, ...] = (
    "Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops", "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation", "Transitional woodland, shrub",
    "Beaches, dunes, sands", "Inland wetlands", "Coastal wetlands", "Inland waters",
    "Marine waters",
)

_SAME = {c: c for c in (
    "Industrial or commercial units", "Pastures", "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
    "Beaches, dunes, sands",
)}
#: 43 CORINE level-3 labels -> 19-class label (None: class removed from the nomenclature).
LABELS43_TO_19: dict[str, str | None] = {
    **_SAME,
    "Continuous urban fabric": "Urban fabric",
    "Discontinuous urban fabric": "Urban fabric",
    "Road and rail networks and associated land": None,
    "Port areas": None,
    "Airports": None,
    "Mineral extraction sites": None,
    "Dump sites": None,
    "Construction sites": None,
    "Green urban areas": None,
    "Sport and leisure facilities": None,
    "Non-irrigated arable land": "Arable land",
    "Permanently irrigated land": "Arable land",
    "Rice fields": "Arable land",
    "Vineyards": "Permanent crops",
    "Fruit trees and berry plantations": "Permanent crops",
    "Olive groves": "Permanent crops",
    "Annual crops associated with permanent crops": "Permanent crops",
    "Natural grassland": "Natural grassland and sparsely vegetated areas",
    "Sparsely vegetated areas": "Natural grassland and sparsely vegetated areas",
    "Moors and heathland": "Moors, heathland and sclerophyllous vegetation",
    "Sclerophyllous vegetation": "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland/shrub": "Transitional woodland, shrub",
    "Bare rock": None,
    "Burnt areas": None,
    "Inland marshes": "Inland wetlands",
    "Peatbogs": "Inland wetlands",
    "Salt marshes": "Coastal wetlands",
    "Salines": "Coastal wetlands",
    "Intertidal flats": None,
    "Water courses": "Inland waters",
    "Water bodies": "Inland waters",
    "Coastal lagoons": "Marine waters",
    "Estuaries": "Marine waters",
    "Sea and ocean": "Marine waters",
}
_META = "_labels_metadata.json"


def labels19(labels43: list[str], where: str) -> list[int]:
    """Indices into :data:`BEN19_CLASSES` of a patch's 43-class labels (removed classes skipped).

    Raises:
        DataError: a label that is neither a 43-class nor a 19-class name.
    """
    out = set()
    for name in labels43:
        if name in LABELS43_TO_19:
            new = LABELS43_TO_19[name]
        elif name in BEN19_CLASSES:
            new = name
        else:
            raise DataError(f"unknown class {name!r} in {where}")
        if new is not None:
            out.add(BEN19_CLASSES.index(new))
    return sorted(out)


# -- npz pack -----------------------------------------------------------------------------------
def find_npz(root: Path) -> Path | None:
    """The ``.npz`` pack at ``root`` (the file itself, or the only ``.npz`` in the folder)."""
    if root.is_file() and root.suffix == ".npz":
        return root
    if root.is_dir():
        packs = sorted(root.glob("*.npz"))
        if len(packs) == 1:
            return packs[0]
    return None


def load_npz(path: Path) -> Catalog:
    """Read a BigEarthNet ``.npz`` pack.

    Raises:
        DataError: unreadable pack, missing arrays, non-finite SAR values.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz pack ({exc})") from exc
    need = {"labels19", "class_names"}
    if not need <= set(data) or not ({"s1", "s2"} & set(data)):
        raise DataError(f"{path} lacks arrays (needs labels19, class_names and s1 and/or s2; has "
                        f"{', '.join(sorted(data))})")
    sources, bands, units = {}, {}, {}
    for src, default, unit in (("s2", BEN_S2_BANDS, OPTICAL_UNITS), ("s1", S1_BANDS, "db")):
        if src in data:
            arr = data[src].astype(np.float32)
            if not np.isfinite(arr).all():
                raise DataError(f"{path} contains NaN/Inf values in {src!r}")
            names = tuple(str(b) for b in data.get(f"{src}_bands", default))
            sources[src], bands[src], units[src] = arr, names, unit
    labels = data["labels19"].astype(np.float32)
    n = labels.shape[0]
    ids = [f"row{i:05d}" for i in range(n)]
    index = path.parent / "index.csv"
    if index.is_file():
        with open(index, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if len(rows) == n and rows and "s2_name" in rows[0]:
            ids = [r["s2_name"] or r.get("s1_name") or f"row{i:05d}" for i, r in enumerate(rows)]
    return Catalog("bigearthnet-npz", str(path), ids, labels,
                   [str(c) for c in data["class_names"]], "multilabel", sources, bands, units)


# -- original GeoTIFF folders -------------------------------------------------------------------
def _patch_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob(f"*{_META}"))


def _is_patch(folder: Path) -> bool:
    return (folder / f"{folder.name}{_META}").is_file()


def looks_like_geotiff_folders(root: Path) -> bool:
    """True for a BigEarthNet archive, or a folder of patch folders (up to two levels down) or of
    their ``.tar.*`` archives. Cheap: looks at folder names, never walks a whole tree."""
    if is_archive(root):
        return True
    if not root.is_dir():
        return False
    if _is_patch(root):
        return True
    children = [p for p in root.iterdir() if not p.name.startswith(".")]
    if any(is_archive(p) for p in children):
        return True
    for child in (c for c in children if c.is_dir()):
        if _is_patch(child):
            return True
        grand = next((g for g in child.iterdir() if g.is_dir()), None)
        if grand is not None and _is_patch(grand):
            return True
    return False


def _read_upsampled(files: list[Path], names: tuple[str, ...]) -> np.ndarray:
    bands = [read_geotiff(f, (n,), expected_count=1)[0][0] for f, n in zip(files, names,
                                                                           strict=True)]
    size = max(b.shape[0] for b in bands)
    out = []
    for f, b in zip(files, bands, strict=True):
        factor = size // b.shape[0]
        if b.shape[0] * factor != size or b.shape[1] * factor != size:
            raise DataError(f"{f} is {b.shape[0]}x{b.shape[1]}, not a divisor of {size}x{size}")
        out.append(np.repeat(np.repeat(b, factor, axis=0), factor, axis=1))
    return np.stack(out)


def _meta(folder: Path) -> dict:
    path = folder / f"{folder.name}{_META}"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path} ({exc})") from exc


def load_geotiff_folders(root: Path) -> Catalog:
    """Read original BigEarthNet patch folders (or archives of them) under ``root``.

    S1 patches are paired with S2 patches through ``corresponding_s2_patch`` of their metadata;
    when both sensors are present only complete pairs are kept.

    Raises:
        DataError: no patches, a missing band file, unknown labels, bands of unusable sizes.
    """
    roots = [root]
    if is_archive(root):
        roots = [extract_archive(root)]
    elif root.is_dir() and any(is_archive(p) for p in root.iterdir()):
        roots = [extract_archive(p) for p in sorted(root.iterdir()) if is_archive(p)]
    s2_dirs, s1_dirs = {}, {}
    for r in roots:
        for d in _patch_dirs(r):
            if (d / f"{d.name}_B02.tif").exists():
                s2_dirs[d.name] = d
            elif (d / f"{d.name}_VV.tif").exists() or (d / f"{d.name}_VH.tif").exists():
                s1_dirs[d.name] = d
    if not s2_dirs and not s1_dirs:
        raise DataError(f"no BigEarthNet patch folders in {root}")
    s1_of_s2 = {}
    for name, d in s1_dirs.items():
        s1_of_s2[_meta(d).get("corresponding_s2_patch", name)] = name
    if s2_dirs and s1_dirs:
        keys = sorted(k for k in s2_dirs if k in s1_of_s2)
        if not keys:
            raise DataError(f"no S1 patch in {root} corresponds to an S2 patch")
    else:
        keys = sorted(s2_dirs) if s2_dirs else sorted(s1_of_s2)
    ids, label_rows, s2, s1, dropped = [], [], [], [], []
    for key in keys:
        meta_dir = s2_dirs.get(key) or s1_dirs[s1_of_s2[key]]
        idx = labels19(_meta(meta_dir).get("labels", []), str(meta_dir))
        if not idx:
            dropped.append(key)
            continue
        ids.append(key)
        label_rows.append(idx)
        if s2_dirs:
            d = s2_dirs[key]
            s2.append(_read_upsampled([d / f"{key}_{b}.tif" for b in BEN_S2_BANDS], BEN_S2_BANDS))
        if s1_dirs:
            d = s1_dirs[s1_of_s2[key]]
            s1.append(_read_upsampled([d / f"{d.name}_{b}.tif" for b in S1_BANDS], S1_BANDS))
    if not ids:
        raise DataError(f"no patch in {root} has a label of the 19-class nomenclature")
    sources, bands, units = {}, {}, {}
    if s2:
        sources["s2"], bands["s2"], units["s2"] = stack_patches(s2, ids, "S2 patches"), \
            BEN_S2_BANDS, OPTICAL_UNITS
    if s1:
        sources["s1"], bands["s1"], units["s1"] = stack_patches(s1, ids, "S1 patches"), \
            S1_BANDS, "db"
    notes = [f"dropped {len(dropped)} patch(es) without a 19-class label"] if dropped else []
    return Catalog("bigearthnet-geotiff", str(root), ids,
                   multi_hot(label_rows, len(BEN19_CLASSES)), list(BEN19_CLASSES), "multilabel",
                   sources, bands, units, notes=notes)
