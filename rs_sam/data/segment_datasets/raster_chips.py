"""Reading stretched chips of a georeferenced raster (segmentation training and LoRA masks)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from rs_sam.data.grid import ChipWindow, RasterGrid
from rs_sam.data.image_files import nodata_equal
from rs_sam.data.normalize import JointStretch, percentile_stretch
from rs_sam.data.rasters import RasterInfo, is_integer_8bit
from rs_sam.data.segment_datasets.samples import SegmentDatasetError


def fit_stretch(
    info: RasterInfo,
    bands: Sequence[int],
    nodata: float | None,
    percentiles: tuple[float, float],
    max_side: int = 1024,
) -> JointStretch:
    """Identity for uint8; else percentiles of a decimated read (at most ``max_side``²)."""
    if is_integer_8bit(info.dtype):
        return JointStretch.identity(len(bands))
    factor = max(1, math.ceil(max(info.width, info.height) / max_side))
    shape = (len(bands), math.ceil(info.height / factor), math.ceil(info.width / factor))
    with rasterio.open(info.path) as src:
        raw = src.read(list(bands), out_shape=shape, resampling=Resampling.nearest)
    valid = np.isfinite(raw).all(axis=0)
    if nodata is not None:
        valid &= ~nodata_equal(raw, nodata).all(axis=0)
    if not valid.any():
        raise SegmentDatasetError(
            f"{info.label} contains only nodata (nodata={nodata}); check the raster or nodata="
        )
    return percentile_stretch((band[valid].astype(np.float64) for band in raw), percentiles)


def read_stretched_chip(
    path: Path,
    bands: Sequence[int],
    nodata: float | None,
    stretch: JointStretch,
    window: ChipWindow,
    grid: RasterGrid,
) -> tuple[np.ndarray, np.ndarray, Window]:
    """One chip of a raster: ``(3, S, S)`` stretched image (0 where not valid), ``(S, S)``
    validity (inside the raster, finite, not nodata) and the window clipped to the raster."""
    size = window.size
    clipped = window.clipped(grid)
    rows, cols = int(clipped.height), int(clipped.width)
    raw = np.zeros((len(bands), size, size), dtype=np.float32)
    with rasterio.open(path) as src:
        raw[:, :rows, :cols] = src.read(list(bands), window=clipped)
    valid = np.zeros((size, size), dtype=bool)
    valid[:rows, :cols] = True
    valid &= np.isfinite(raw).all(axis=0)
    if nodata is not None:
        valid &= ~nodata_equal(raw, nodata).all(axis=0)
    image = stretch.apply(np.where(np.isfinite(raw), raw, 0.0))
    image[:, ~valid] = 0.0
    return image, valid, clipped
