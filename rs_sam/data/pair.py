"""A bitemporal pair read chip by chip on date a's grid.

Both dates are torchgeo :class:`~torchgeo.datasets.RasterDataset` instances joined with
``a & b`` (an :class:`~torchgeo.datasets.IntersectionDataset`): b is reprojected and
resampled onto a's CRS and resolution, and every query is aligned to a's pixel grid, so
the output lies exactly on a's grid. Only the overlap of the two footprints is processed.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyproj
import rasterio.features
import shapely
from affine import Affine
from shapely.geometry import Polygon, box
from torchgeo.datasets import IntersectionDataset, RasterDataset

from rs_sam.data.grid import ChipWindow, RasterGrid, overview_steps
from rs_sam.data.pixel_reads import read_pixels
from rs_sam.data.rasters import RasterInfo
from rs_sam.data.remote import remote_env
from rs_sam.errors import InputRasterError


class SceneRaster(RasterDataset):
    """One date: a single raster file read through torchgeo, bands picked by number."""

    filename_glob = "*"

    def __init__(self, info: RasterInfo, bands: Sequence[int]) -> None:
        self.all_bands = tuple(f"B{i}" for i in range(1, info.count + 1))
        with remote_env(info.remote):  # torchgeo opens the file to index it
            super().__init__(paths=[str(info.path)], bands=[f"B{i}" for i in bands], cache=True)


@dataclass(frozen=True)
class ChipPair:
    """Raw pixels of both dates for one chip (before normalisation)."""

    window: ChipWindow
    image_a: np.ndarray  # (C, S, S) float32, the file's values
    image_b: np.ndarray  # (C, S, S) float32, b resampled onto a's grid
    valid: np.ndarray  # (S, S) bool: inside the grid and the data of both dates


@dataclass(frozen=True)
class PairSource:
    """What to read for a pair (picklable, hashable): both headers, bands, nodata.

    :meth:`open` gives the :class:`BitemporalPair` in any process that can reach the files.
    """

    a: RasterInfo
    b: RasterInfo
    bands: tuple[int, ...]
    nodata: float | None = None

    def open(self) -> BitemporalPair:
        return BitemporalPair(self.a, self.b, bands=self.bands, nodata=self.nodata)


class BitemporalPair:
    """Dates a and b on a's grid, restricted to their overlap.

    Args:
        a, b: validated headers (see :func:`rs_sam.data.rasters.open_date`).
        bands: 1-based band indexes read from both dates.
        nodata: value that marks missing data in both dates (default: each file's own).
    """

    def __init__(
        self,
        a: RasterInfo,
        b: RasterInfo,
        *,
        bands: Sequence[int],
        nodata: float | None = None,
    ) -> None:
        self.a, self.b = a, b
        self.bands = tuple(bands)
        self.source = PairSource(a, b, self.bands, nodata)
        self.nodata_a = a.nodata if nodata is None else nodata
        self.nodata_b = b.nodata if nodata is None else nodata
        self.footprint_b = _footprint_in(b, a.crs)
        self.grid = _overlap_grid(a, b, self.footprint_b)
        # torchgeo prints a line when it changes b's resolution: keep stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            self.dataset = IntersectionDataset(
                SceneRaster(a, self.bands), SceneRaster(b, self.bands), spatial_only=True
            )

    def read_chip(self, window: ChipWindow) -> ChipPair:
        """Read one chip of both dates; parts past the grid's edge are padding (invalid)."""
        res_x, res_y = self.grid.transform.a, -self.grid.transform.e
        transform = self.grid.window_transform(window)
        image_a, image_b = self._read(transform, window.size, window.size, res_x, res_y)
        valid = self._valid(image_a, image_b, transform)
        rows = max(0, min(window.size, self.grid.height - window.row_off))
        cols = max(0, min(window.size, self.grid.width - window.col_off))
        valid[rows:, :] = False
        valid[:, cols:] = False
        image_a[:, ~valid] = 0
        image_b[:, ~valid] = 0
        return ChipPair(window=window, image_a=image_a, image_b=image_b, valid=valid)

    def read_overview(self, max_side: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The whole overlap of both dates, decimated to at most ``max_side`` pixels a side.

        Returns ``(image_a, image_b, valid)``; memory does not grow with raster size.
        """
        step_x, step_y = overview_steps(self.grid, max_side)
        width = math.ceil(self.grid.width / step_x)
        height = math.ceil(self.grid.height / step_y)
        res_x = self.grid.transform.a * step_x
        res_y = -self.grid.transform.e * step_y
        transform = self.grid.transform @ Affine.scale(step_x, step_y)
        image_a, image_b = self._read(transform, width, height, res_x, res_y)
        return image_a, image_b, self._valid(image_a, image_b, transform)

    def _read(
        self, transform: Affine, width: int, height: int, res_x: float, res_y: float
    ) -> tuple[np.ndarray, np.ndarray]:
        left, top = transform.c, transform.f
        query = (
            slice(left, left + width * res_x, res_x),
            slice(top - height * res_y, top, res_y),
        )
        image = read_pixels(self.dataset, query, [self.a, self.b], self.a.crs)
        n = len(self.bands)
        image = fit_to_shape(image, height, width)
        return image[:n].copy(), image[n:].copy()

    def _valid(self, image_a: np.ndarray, image_b: np.ndarray, transform: Affine) -> np.ndarray:
        height, width = image_a.shape[1:]
        valid = rasterio.features.geometry_mask(
            [self.footprint_b], out_shape=(height, width), transform=transform, invert=True
        )
        for image, nodata in ((image_a, self.nodata_a), (image_b, self.nodata_b)):
            if nodata is not None:
                if math.isnan(nodata):
                    valid &= ~np.all(np.isnan(image), axis=0)
                else:
                    valid &= ~np.all(image == nodata, axis=0)
            valid &= np.all(np.isfinite(image), axis=0)
        return valid


def fit_to_shape(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crop or zero-pad (C, h, w) to (C, height, width) (merge may round by one pixel)."""
    out = np.zeros((image.shape[0], height, width), dtype=np.float32)
    h, w = min(height, image.shape[1]), min(width, image.shape[2])
    out[:, :h, :w] = image[:, :h, :w]
    return out


def _footprint_in(info: RasterInfo, crs: Any) -> Polygon:
    """The raster's footprint transformed into ``crs`` (edges densified, so curved)."""
    left, bottom, right, top = info.bounds
    outline = box(left, bottom, right, top)
    if info.crs == crs:
        return outline
    step = max(right - left, top - bottom) / 64
    outline = shapely.segmentize(outline, step)
    transformer = pyproj.Transformer.from_crs(info.crs, crs, always_xy=True)
    moved = shapely.transform(
        outline, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))
    )
    if not moved.is_valid or not np.all(np.isfinite(shapely.get_coordinates(moved))):
        raise InputRasterError(
            f"{info.label} cannot be transformed into the CRS of the first date; "
            "check both files' CRS"
        )
    return moved


def _overlap_grid(a: RasterInfo, b: RasterInfo, footprint_b: Polygon) -> RasterGrid:
    """The part of a's grid covered by b, snapped outwards to a's pixel edges."""
    overlap = box(*a.bounds).intersection(footprint_b)
    if overlap.is_empty or overlap.area == 0:
        raise InputRasterError(
            f"{a.label} and {b.label} do not overlap (after transforming b into a's CRS); "
            "pass two rasters of the same area"
        )
    minx, miny, maxx, maxy = overlap.bounds
    t = a.transform
    col0 = max(0, math.floor((minx - t.c) / t.a + 1e-6))
    col1 = min(a.width, math.ceil((maxx - t.c) / t.a - 1e-6))
    row0 = max(0, math.floor((t.f - maxy) / -t.e + 1e-6))
    row1 = min(a.height, math.ceil((t.f - miny) / -t.e - 1e-6))
    if col1 <= col0 or row1 <= row0:
        raise InputRasterError(
            f"{a.label} and {b.label} overlap by less than one pixel; "
            "pass two rasters of the same area"
        )
    return RasterGrid(
        crs=a.crs,
        transform=t @ Affine.translation(col0, row0),
        width=col1 - col0,
        height=row1 - row0,
    )
