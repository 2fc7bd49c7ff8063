"""Burn labelled polygons into a uint8 label raster on an image's grid, block by block.

Memory holds the polygons and one block, never the whole raster: each block is rasterised
from the polygons its bounds meet (an STR-tree query) and written through its window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

from rs_sam.data.labels import IGNORE
from rs_sam.data.rasters import RasterInfo
from rs_sam.inference.raster_io import block_windows

#: Label values: 0 background (no change), 1.. the classes, IGNORE (255, the file's nodata).
BACKGROUND = 0
#: Block side of the windowed writes (pixels); a multiple of the GeoTIFF's 256-pixel tiles.
BLOCK = 1024


def write_label_raster(
    path: Path,
    grid: RasterInfo,
    geometries: Sequence[shapely.Geometry],
    values: Sequence[int],
    *,
    block: int = BLOCK,
) -> dict[int, int]:
    """Write ``values[i]`` inside ``geometries[i]`` (later ones over earlier) on ``grid``.

    Pixels no polygon covers are :data:`BACKGROUND`; the file's nodata is :data:`IGNORE`,
    so training reads 255 as "ignore". Returns the pixel count of each value written.
    """
    geoms = np.asarray(geometries, dtype=object)
    burn = np.asarray(values, dtype=np.uint8)
    tree = shapely.STRtree(geoms)
    profile = {
        "driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1,
        "dtype": "uint8", "crs": grid.crs, "transform": grid.transform, "nodata": IGNORE,
        "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
    }  # fmt: skip
    counts: dict[int, int] = {}
    with rasterio.open(path, "w", **profile) as dst:
        for window in block_windows(grid.width, grid.height, block):
            box = shapely.box(*window_bounds(window, grid.transform))
            hits = np.sort(tree.query(box, predicate="intersects"))  # keep the burn order
            shape = (int(window.height), int(window.width))
            if hits.size:
                pixels = rasterize(
                    zip(geoms[hits], burn[hits], strict=True),
                    out_shape=shape,
                    transform=window_transform(window, grid.transform),
                    fill=BACKGROUND,
                    dtype="uint8",
                )
            else:
                pixels = np.full(shape, BACKGROUND, np.uint8)
            dst.write(pixels, 1, window=window)
            for value, count in zip(*np.unique(pixels, return_counts=True), strict=True):
                counts[int(value)] = counts.get(int(value), 0) + int(count)
    return counts
