"""Data layer: readers, layouts, modality views, datasets, splits, statistics, augmentation.

Imports are lazy (``from cmkd_edge.data import open_dataset`` loads torch only then), so listing the
views registry or reading a raster never pulls in torch.
"""

from __future__ import annotations

from cmkd_edge._lazy import lazy_exports

_EXPORTS = {
    "open_dataset": "cmkd_edge.data.dataset",
    "ViewDataset": "cmkd_edge.data.dataset",
    "band_stats": "cmkd_edge.data.stats",
    "parse_view": "cmkd_edge.data.views",
    "VIEWS": "cmkd_edge.data.views",
    "View": "cmkd_edge.data.views",
    "Sample": "cmkd_edge.data.views",
    "stratified_indices": "cmkd_edge.data.splits",
    "stratified_split": "cmkd_edge.data.splits",
    "read_split_file": "cmkd_edge.data.splits",
    "write_split_file": "cmkd_edge.data.splits",
    "label_tensor": "cmkd_edge.data.labels",
    "labels_tensor": "cmkd_edge.data.labels",
    "multi_hot": "cmkd_edge.data.labels",
    "read_raster": "cmkd_edge.data.readers",
    "read_geotiff": "cmkd_edge.data.readers",
    "read_npy": "cmkd_edge.data.readers",
    "detect_layout": "cmkd_edge.data.layouts",
    "clear_cache": "cmkd_edge.data.layouts",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
