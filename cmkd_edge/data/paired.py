"""Generic paired layout: two folders of co-registered rasters with identical names + ``labels.csv``.

```
root/
  labels.csv        file,label[,class_name][,split]    (file = a name present in both folders)
  s2/ (optical)     x1.tif  x2.tif ...                 GeoTIFF or .npy, (B, H, W)
  s1/ (SAR)         x1.tif  x2.tif ...                 VV,VH in dB or linear power
```

Which folder is which sensor comes from its name (``s1``/``sar`` vs ``s2``/``optical``/``ms``/``rgb``)
or else from its band count (2 bands = SAR). SAR in linear power (no negative value anywhere) is
converted to dB on load and reported as ``source_units["s1"] == "linear"``, so the deployed model
adds the same conversion. An optional ``classes.txt`` (one name per line) fixes the class list.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmkd_edge.data.bands import OPTICAL_UNITS, S1_BANDS, default_band_names
from cmkd_edge.data.catalog import Catalog, stack_patches
from cmkd_edge.data.labels import read_labels_csv, resolve_labels
from cmkd_edge.data.readers import RASTER_SUFFIXES, read_raster
from cmkd_edge.data.splits import normalise_split
from cmkd_edge.errors import DataError

_SAR_NAMES = ("s1", "sar", "sentinel1", "sentinel-1", "radar")
_OPT_NAMES = ("s2", "optical", "ms", "msi", "rgb", "sentinel2", "sentinel-2")


def _raster_folders(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                  and any(p.suffix.lower() in RASTER_SUFFIXES for p in d.iterdir()))


def looks_like_paired(root: Path) -> bool:
    """True for a folder with ``labels.csv`` and two raster folders sharing file names."""
    if not (root.is_dir() and (root / "labels.csv").is_file()):
        return False
    folders = _raster_folders(root)
    if len(folders) != 2:
        return False
    names = [{p.name for p in d.iterdir()} for d in folders]
    return bool(names[0] & names[1])


def _source_of(folder: Path) -> str:
    low = folder.name.lower()
    if low in _SAR_NAMES or low.startswith(("s1_", "sar_")):
        return "s1"
    if low in _OPT_NAMES or low.startswith(("s2_", "opt")):
        return "s2"
    first = next(p for p in sorted(folder.iterdir()) if p.suffix.lower() in RASTER_SUFFIXES)
    arr, names = read_raster(first, lambda n: default_band_names(n, "s1") or default_band_names(
        n, "s2"))
    return "s1" if arr.shape[0] == 2 and set(names) <= set(S1_BANDS) else "s2"


def load_paired(root: Path) -> Catalog:
    """Read a paired layout.

    Raises:
        DataError: not exactly two raster folders, both the same sensor, a file missing from either
            folder, co-registered files of different sizes, labels.csv problems, unreadable files.
    """
    folders = _raster_folders(root)
    if len(folders) != 2:
        raise DataError(f"{root} needs exactly two folders of rasters (found "
                        f"{', '.join(d.name for d in folders) or 'none'})")
    sources = {d: _source_of(d) for d in folders}
    if len(set(sources.values())) != 2:
        raise DataError(f"{root}: both {folders[0].name}/ and {folders[1].name}/ look like "
                        f"{next(iter(sources.values()))}",
                        "name the folders s1 (SAR) and s2 (optical)")
    csv_path = root / "labels.csv"
    rows = read_labels_csv(csv_path, ["file", "label"])
    classes_txt = root / "classes.txt"
    names = None
    if classes_txt.is_file():
        names = [ln.strip() for ln in classes_txt.read_text(encoding="utf-8").splitlines()
                 if ln.strip()]
    labels, class_names = resolve_labels(rows, csv_path, names)
    per_source: dict[str, list[np.ndarray]] = {"s1": [], "s2": []}
    band_names: dict[str, tuple[str, ...]] = {}
    for row in rows:
        shapes = {}
        for folder, src in sources.items():
            path = folder / row["file"]
            if not path.exists():
                raise DataError(f"file not found: {path} (listed in {csv_path})")
            arr, names_ = read_raster(path, lambda n, s=src: default_band_names(n, s))
            if src not in band_names:
                band_names[src] = names_
            elif names_ != band_names[src]:
                raise DataError(f"{path} has bands {','.join(names_)}, expected "
                                f"{','.join(band_names[src])}")
            shapes[path] = arr.shape[1:]
            per_source[src].append(arr)
        if len(set(shapes.values())) > 1:
            (pa, sa), (pb, sb) = shapes.items()
            raise DataError(f"co-registered files differ in size: {pa} is {sa[0]}x{sa[1]}, "
                            f"{pb} is {sb[0]}x{sb[1]}")
    ids = [r["file"] for r in rows]
    stacked = {s: stack_patches(a, ids, f"{s} files") for s, a in per_source.items()}
    units = {"s2": OPTICAL_UNITS, "s1": "db"}
    if set(band_names["s1"]) != set(S1_BANDS) or len(band_names["s1"]) != 2:
        raise DataError(f"SAR files in {root} have bands {','.join(band_names['s1'])}, "
                        "expected VV,VH")
    if (stacked["s1"] >= 0).all():
        units["s1"] = "linear"
        stacked["s1"] = (10.0 * np.log10(np.maximum(stacked["s1"], 1e-10))).astype(np.float32)
    splits = None
    if "split" in rows[0]:
        splits = np.asarray([normalise_split(r["split"], str(csv_path)) for r in rows])
    return Catalog("paired", str(root), ids, labels, class_names, "multiclass", stacked,
                   band_names, units, splits)

