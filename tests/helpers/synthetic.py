"""Small, real-looking synthetic GeoTIFFs for tests (real CRS and transforms)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject

UTM33 = CRS.from_epsg(32633)
#: 10 m pixels, north-up, top-left corner at a plausible UTM 33N position.
ORIGIN = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)


def texture(height: int, width: int, bands: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth, field-like texture in 0..1, (bands, height, width) float32."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((bands, height, width), np.float32)
    for band in range(bands):
        field = np.zeros((height, width), np.float32)
        for _ in range(4):
            fy, fx, phase = rng.uniform(0.01, 0.08), rng.uniform(0.01, 0.08), rng.uniform(0, 6.3)
            field += np.sin(xs * fx + ys * fy + phase)
        out[band] = (field - field.min()) / (np.ptp(field) + 1e-6)
    return out


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: CRS | None = UTM33,
    transform: Affine = ORIGIN,
    nodata: float | None = None,
) -> Path:
    """Write (bands, H, W) as a tiled GeoTIFF in the array's dtype."""
    count, height, width = data.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def paint_change(image: np.ndarray, rows: slice, cols: slice, value: float) -> np.ndarray:
    """A copy of ``image`` with a flat rectangle painted in every band."""
    changed = image.copy()
    changed[:, rows, cols] = value
    return changed


def warp_to(src_path: Path, dst_path: Path, crs: CRS) -> Path:
    """Reproject a raster into another CRS (as a second date delivered in another CRS)."""
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds
        )
        data = np.zeros((src.count, height, width), src.dtypes[0])
        reproject(
            src.read(),
            data,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=transform,
            dst_crs=crs,
            resampling=Resampling.bilinear,
            dst_nodata=0,
        )
    return write_raster(dst_path, data, crs=crs, transform=transform, nodata=0)
