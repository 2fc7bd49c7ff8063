"""Rasters whose header opens but whose pixels cannot all be read, made in the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from tests.helpers.synthetic import texture, write_raster


def cut_in_half(path: Path, height: int = 300, width: int = 300) -> Path:
    """A striped uint8 RGB GeoTIFF truncated to half its bytes (an interrupted copy)."""
    write_raster(path, (texture(height, width, seed=3) * 200 + 20).astype(np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def vrt_of(source: Path, vrt: Path) -> Path:
    """A VRT showing every band of ``source`` (by absolute path) on the same grid."""
    with rasterio.open(source) as src:
        gt = ", ".join(repr(v) for v in src.transform.to_gdal())
        bands = "".join(
            f'<VRTRasterBand dataType="Byte" band="{i}"><SimpleSource>'
            f'<SourceFilename relativeToVRT="0">{source.resolve()}</SourceFilename>'
            f"<SourceBand>{i}</SourceBand></SimpleSource></VRTRasterBand>"
            for i in range(1, src.count + 1)
        )
        vrt.write_text(
            f'<VRTDataset rasterXSize="{src.width}" rasterYSize="{src.height}">'
            f"<SRS>{src.crs.to_wkt()}</SRS><GeoTransform>{gt}</GeoTransform>{bands}</VRTDataset>"
        )
    return vrt
