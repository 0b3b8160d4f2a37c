"""cmkd_edge.runtime: run a bundle on a device - numpy, rasterio, rich and one backend, never torch.

Public API (imported lazily, so ``import cmkd_edge.runtime`` loads no backend)::

    Classifier.open(bundle, backend="auto", precision="auto", threads=None, rebuild=False)
    classify_scene(classifier, path, out, stride=None, batch=32, probabilities=False,
                   nodata_policy="mask")
    profile_bundle(bundle, backend="auto", precision="auto", batches=(1,), warmup=10,
                   iterations=200, threads=None, compare=False)
    open_bundle(path) / pack_bundle(dir, out)
    manifest: Manifest, write_manifest, read_manifest (see cmkd_edge.runtime.contract.manifest)
"""

from __future__ import annotations

import logging

from cmkd_edge._lazy import lazy_exports

# a library logs, the application decides where: no "No handlers" fallback to stderr
logging.getLogger("cmkd_edge.runtime").addHandler(logging.NullHandler())

_LAZY = {
    "Classifier": ".classifier", "select_artifacts": ".classifier",
    "classify_scene": ".scene", "tile_grid": ".scene", "axis_tiles": ".scene",
    "profile_bundle": ".profiler", "open_bundle": ".contract.bundle", "pack_bundle": ".contract.bundle",
    "Manifest": ".contract.manifest", "read_manifest": ".contract.manifest",
    "write_manifest": ".contract.manifest",
    "validate_input": ".contract.validate",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = sorted(_LAZY)
