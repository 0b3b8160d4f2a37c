"""Input and output formats the applications read and write: radar chips (``chips``), rasters and
their band sources (``bandsources``: a stacked raster, a STAC Item, a per-band folder; ``geo``: the
rasterio requirement), the window blending of a scene's tiles (``blend``) and Cloud-Optimized GeoTIFF
output (``cog``).

A format knows files, not models: it may use the layers below it (the backends, the contract) and
never an application (today it needs neither). Nothing is imported here, and rasterio only inside
the functions that need it.
"""
