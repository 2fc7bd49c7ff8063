"""Rasters, chips and training datasets.

GDAL's block cache defaults to 5 % of the machine's memory and fills as a large raster is
read, so a process's memory would grow with the raster up to that share; rs-sam reads by
windows and needs little cache, so it caps it at 64 MB unless ``GDAL_CACHEMAX`` is set.
"""

import os

os.environ.setdefault("GDAL_CACHEMAX", "64")  # MB; read by GDAL when it first caches a block
