"""Per-polygon statistics of a class raster, read window by window (one polygon at a time)."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from rasterio.features import geometry_mask
from rasterio.windows import Window, from_bounds


def majority_class(polygons: gpd.GeoDataFrame, raster: Path, *, band: int = 1) -> pd.Series:
    """The most frequent class of ``band`` inside each polygon (ties: the lowest id).

    Pixels count when their centre lies inside the polygon; a polygon too thin to hold a
    pixel centre uses the pixels it touches. Nodata pixels are ignored; a polygon with no
    valid pixel gets <NA>. Polygons must be in the raster's CRS.

    Returns:
        A nullable ``Int64`` series aligned with ``polygons``.
    """
    values: list[int | None] = []
    with rasterio.open(raster) as src:
        nodata = src.nodata
        for geometry in polygons.geometry:
            window = _pixel_window(geometry.bounds, src)
            if window is None:  # outside the raster
                values.append(None)
                continue
            data = src.read(band, window=window)
            transform = src.window_transform(window)
            for all_touched in (False, True):
                inside = geometry_mask(
                    [geometry], data.shape, transform, invert=True, all_touched=all_touched
                )
                if inside.any():
                    break
            found = data[inside]
            if nodata is not None:
                found = found[found != nodata]
            values.append(int(np.bincount(found.astype(np.int64)).argmax()) if found.size else None)
    return pd.Series(values, index=polygons.index, dtype="Int64")


def _pixel_window(
    bounds: tuple[float, float, float, float], src: rasterio.DatasetReader
) -> Window | None:
    """The raster's pixels under ``bounds``, one pixel wider each side; None when outside."""
    window = from_bounds(*bounds, transform=src.transform)
    col0 = max(0, math.floor(window.col_off) - 1)
    row0 = max(0, math.floor(window.row_off) - 1)
    col1 = min(src.width, math.ceil(window.col_off + window.width) + 1)
    row1 = min(src.height, math.ceil(window.row_off + window.height) + 1)
    if col0 >= col1 or row0 >= row1:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)
